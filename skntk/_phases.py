"""The network NTK phases and the registry of every NTK phase, :data:`NTK_PHASES`.

Each phase is a class of the interface :class:`skntk._phase_api.NTKPhase`, looked up
by the value of ``ntk_phase`` in :data:`NTK_PHASES`; the network phases here keep
parameters ``(W, b)`` and train on the padded rows of a bucket, the kernel phase is
in :mod:`skntk._kernel_phase`. Every step takes the estimator's loss
(``settings.loss``, :mod:`skntk._losses`) as a static argument.

``"linearized"`` has two solvers: full-batch gradient descent with step ``eta``
(:class:`LinearizedPhase`) and L-BFGS with an exact line search
(:class:`LinearizedLBFGSPhase`, :mod:`skntk._linearized`), the default.

Formulas: the user guide's "Method" section; frozen-Jacobian and linearised training
after Lee et al., NeurIPS 2019, "Wide neural networks of any depth evolve as linear
models under gradient descent", eq. (5)-(8); the closed-form flow, ibid. eq. (9)-(10).

Parameterisation: ``settings.layer_scales`` is ``D`` of
:mod:`skntk._parameterization` (``None``: standard). Every phase keeps its
parameters in ``(W, b)`` and takes the steps of gradient descent in the trained
coordinates ``omega = D^{-1/2} theta``: a step ``omega -= eta g_omega`` is
``theta -= eta D g_theta``, and the ridge ``(lambda / 2) ||omega - omega*||^2`` adds
``lambda (theta - theta*)`` to that step (``D^{1/2} D^{-1/2} = I``).
"""

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._devices import shard_rows
from ._kernel_phase import KernelPhase
from ._linearized import (delta_to_params, lbfgs_epoch_and_metrics, lbfgs_init, lbfgs_step,
                          linearization)
from ._losses import CROSS_ENTROPY
from ._mlp import params_to_numpy
from ._network import forward
from ._parameterization import scale_params
from ._phase_api import NTKPhase, PhaseSettings, network_metrics, tree_is_finite

__all__ = ["NTK_PHASES", "PhaseSettings", "NetworkPhase", "NoPhase", "FrozenJacobianPhase",
           "LinearizedPhase", "LinearizedLBFGSPhase", "KernelPhase"]


def _tree_axpy(params, direction, scale):
    return jax.tree_util.tree_map(lambda p, d: p - scale * d, params, direction)


def _mean_residual(outputs, Y, weights, loss):
    """``d loss / d f / N`` per sample (``(softmax(f) - Y) / N`` for the
    cross-entropy); with ``weights`` (1 for real samples, 0 for the padding rows of a
    bucket or a multi-device split) a weighted mean over the real ones."""
    residual = loss.output_gradient(outputs, Y)
    if weights is None:
        return residual / Y.shape[0]
    return residual * (weights / jnp.sum(weights))[:, None]


@partial(jax.jit, static_argnames=("layer_scales", "loss"))
def frozen_jacobian_step(params, params_star, X, Y, learning_rate, weights=None,
                         layer_scales=None, loss=CROSS_ENTROPY):
    """``theta <- theta - eta (1/N) sum_i D J(x_i; theta*)^T grad_f loss(f(x_i; theta), y_i)``.

    For the cross-entropy ``grad_f loss = softmax(f) - y``, for the squared error
    ``f - y``. The sum is one vector-Jacobian product at ``theta*`` (one backward
    pass); no per-sample Jacobian is formed. ``weights`` (N,), optional, masks padding
    rows. ``layer_scales``: ``D`` (static; ``None``: the identity); ``loss``: a
    :class:`skntk._losses.Loss` (static).
    """
    residual = _mean_residual(forward(layer_scales, params, X), Y, weights, loss)
    _, vjp_star = jax.vjp(lambda p: forward(layer_scales, p, X), params_star)
    (direction,) = vjp_star(residual)
    return _tree_axpy(params, scale_params(direction, layer_scales), learning_rate)


@partial(jax.jit, static_argnames="network")
def linearized_logits(params_star, params, X, network=None):
    """``f_lin(x; theta) = f(x; theta*) + J(x; theta*) (theta - theta*)``, one JVP;
    ``network``: the MLP's layer scales or a model (static, :mod:`skntk._network`)."""
    delta = jax.tree_util.tree_map(jnp.subtract, params, params_star)
    f_star, jvp = jax.jvp(lambda p: forward(network, p, X), (params_star,), (delta,))
    return f_star + jvp


@partial(jax.jit, static_argnames=("layer_scales", "loss"))
def linearized_step(params, params_star, X, Y, learning_rate, weights=None, ridge=0.0,
                    layer_scales=None, loss=CROSS_ENTROPY):
    """Full-batch gradient step on the mean loss of the linearised model plus
    ``(ridge / 2) ||omega - omega*||^2``, in the trained coordinates ``omega``:
    ``theta -= eta (D J^T r + ridge (theta - theta*))``; ``weights`` (N,), optional,
    masks padding rows; ``layer_scales``: ``D`` (static; ``None``: the identity,
    ``omega = theta``); ``loss``: a :class:`skntk._losses.Loss` (static)."""
    delta = jax.tree_util.tree_map(jnp.subtract, params, params_star)
    f_star, vjp_star = jax.vjp(lambda p: forward(layer_scales, p, X), params_star)
    _, jvp = jax.jvp(lambda p: forward(layer_scales, p, X), (params_star,), (delta,))
    residual = _mean_residual(f_star + jvp, Y, weights, loss)
    (direction,) = vjp_star(residual)
    direction = jax.tree_util.tree_map(lambda g, d: g + ridge * d,
                                       scale_params(direction, layer_scales), delta)
    return _tree_axpy(params, direction, learning_rate)


class NetworkState(NamedTuple):
    """``params``: current parameters; ``params_star``: the switch point; ``X``, ``Y``:
    training inputs (N', d) and encoded targets (N', C), jax arrays, padded to N' rows
    (a bucket size, and a multiple of the devices of ``settings.mesh`` over which their
    rows are split); ``weights``: (N',), 1 for the N real samples, 0 for padding, or
    ``None`` when there is no padding."""

    params: Any
    params_star: Any
    X: Any
    Y: Any
    weights: Any = None


class NetworkPhase(NTKPhase):
    """Base of the phases whose model is a network around ``theta*``: their state is a
    :class:`NetworkState`, they train on the padded rows of a bucket, and each epoch
    is a full-batch step."""

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        """``weights`` (N,), optional: 0 for padding rows of ``X`` and ``Y`` (a bucket);
        ``val``: the validation rows (:class:`skntk._buckets.Rows`) or ``None``, for the
        phases that report their metrics with each step."""
        mesh = settings.mesh
        if mesh is None:
            return NetworkState(params_star, params_star, X, Y, weights)
        weights = np.ones(X.shape[0], np.float32) if weights is None else weights
        return NetworkState(params_star, params_star, shard_rows(X, mesh), shard_rows(Y, mesh),
                            shard_rows(weights, mesh))

    @staticmethod
    def step(state, epoch, settings):
        return state

    @classmethod
    def report(cls, state, train, val, settings):
        """Finiteness of the parameters and the metrics of :meth:`outputs`, each one
        compiled program (:func:`skntk._phase_api.network_metrics`)."""
        finite = bool(tree_is_finite(cls.parameters(state)))
        metrics = np.asarray(network_metrics(cls.outputs, settings.loss, state, train, val,
                                             settings.layer_scales))
        return np.concatenate([[float(finite)], metrics])

    @staticmethod
    def parameters(state):
        """The parameters whose finiteness :meth:`report` checks."""
        return state.params

    @staticmethod
    def outputs(state, X, layer_scales=None):
        return forward(layer_scales, state.params, X)

    @staticmethod
    def network(state):
        return params_to_numpy(state.params)

    @staticmethod
    def predict_outputs(params_star, params, fitted, X):
        return _network_outputs(params, X, fitted["layer_scales"])


@partial(jax.jit, static_argnames="network")
def _network_outputs(params, X, network=None):
    return forward(network, params, X)


class NoPhase(NetworkPhase):
    """``ntk_phase=None``: the SGD network as it is; no epoch is run."""

    lowers_training_loss = False

    @classmethod
    def auto_learning_rate(cls, settings, step_for_curvature):
        return float("nan")

    @staticmethod
    def epochs(settings):
        return range(0)


class FrozenJacobianPhase(NetworkPhase):
    """``ntk_phase="frozen_jacobian"``: the network trained with the Jacobian frozen at
    ``theta*`` (gradient descent only: its update is not the gradient of a loss)."""

    ntk_solver = "gd"

    @classmethod
    def check_params(cls, ntk_solver, ntk_epochs):
        if ntk_solver == "lbfgs":
            raise ValueError(
                "ntk_solver='lbfgs' needs a loss to minimise, and the frozen-Jacobian "
                "update is not the gradient of one; use ntk_phase='linearized' with it, or "
                "ntk_solver='auto' (gradient descent for 'frozen_jacobian').")
        super().check_params(ntk_solver, ntk_epochs)

    @staticmethod
    def step(state, epoch, settings):
        params = frozen_jacobian_step(state.params, state.params_star, state.X, state.Y,
                                      settings.learning_rate, state.weights,
                                      layer_scales=settings.layer_scales, loss=settings.loss)
        return state._replace(params=params)


class LinearizedPhase(NetworkPhase):
    """``ntk_phase="linearized"``: the first-order Taylor model around ``theta*``, by
    gradient descent (``ntk_solver="gd"``); :meth:`variant` gives the L-BFGS solver
    (:class:`LinearizedLBFGSPhase`) for ``"lbfgs"``, the default."""

    ntk_solver = "gd"

    @classmethod
    def resolve(cls, config, layer_sizes, n_train, n_val):
        return ("lbfgs" if config.ntk_solver in ("auto", "lbfgs") else "gd"), None

    @classmethod
    def variant(cls, ntk_solver, kernel_solver):
        return LinearizedLBFGSPhase if ntk_solver == "lbfgs" else LinearizedPhase

    @classmethod
    def auto_learning_rate(cls, settings, step_for_curvature):
        # The ridge adds to the smoothness constant L = 1 / eta.
        eta = step_for_curvature(settings.loss.curvature)
        return 1.0 / (1.0 / eta + settings.ntk_ridge)

    @staticmethod
    def step(state, epoch, settings):
        params = linearized_step(state.params, state.params_star, state.X, state.Y,
                                 settings.learning_rate, state.weights,
                                 settings.ntk_ridge, layer_scales=settings.layer_scales,
                                 loss=settings.loss)
        return state._replace(params=params)

    @staticmethod
    def outputs(state, X, layer_scales=None):
        return linearized_logits(state.params_star, state.params, X, layer_scales)

    @staticmethod
    def predict_outputs(params_star, params, fitted, X):
        return linearized_logits(params_star, params, X, fitted["layer_scales"])


class LBFGSNetworkState(NamedTuple):
    """State of the L-BFGS linearised phase: ``lin``, the activations at ``theta*`` on
    the training inputs (:class:`skntk._linearized.Linearization`); ``solver``, the
    :class:`skntk._linearized.LBFGSState`; ``X``: the training inputs (N', d) and
    ``Y``, ``weights`` as in :class:`NetworkState`; ``val_lin``, ``Y_val``,
    ``weights_val``: the linearisation on the validation inputs and their targets and
    weights (``None`` without validation data)."""

    lin: Any
    solver: Any
    X: Any
    Y: Any
    weights: Any
    val_lin: Any = None
    Y_val: Any = None
    weights_val: Any = None


class LinearizedLBFGSPhase(LinearizedPhase):
    """``ntk_phase="linearized"`` solved by L-BFGS with an exact line search: the
    linearised loss is convex, so a quasi-Newton method needs far fewer passes than
    gradient descent; each epoch is one iteration (one Jacobian-vector and one
    vector-Jacobian product at ``theta*``), which reports its metrics in the same
    compiled program; the line search sets every step, so
    ``settings.learning_rate`` is unused (NaN)."""

    ntk_solver = "lbfgs"

    @classmethod
    def auto_learning_rate(cls, settings, step_for_curvature):
        return float("nan")

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        base = NoPhase.start(params_star, X, Y, settings, weights)
        weights = base.weights
        if weights is None:
            weights = jnp.ones(base.X.shape[0], base.X.dtype)
        lin = linearization(params_star, base.X, settings.layer_scales)
        state = LBFGSNetworkState(lin, lbfgs_init(lin, base.Y, weights, loss=settings.loss),
                                  base.X, base.Y, weights)
        if val is None:
            return state
        val_weights = val.weights
        if val_weights is None:
            val_weights = jnp.ones(val.X.shape[0], val.X.dtype)
        return state._replace(val_lin=linearization(params_star, val.X, settings.layer_scales),
                              Y_val=val.Y,
                              weights_val=val_weights)

    @classmethod
    def step_and_report(cls, state, epoch, settings, train, val):
        """One iteration and ``[finite, train_loss, train_score, val_loss,
        val_score]`` in one compiled program (see
        :func:`skntk._linearized.lbfgs_epoch_and_metrics`)."""
        solver, report = lbfgs_epoch_and_metrics(
            state.solver, state.lin, state.Y, state.weights, settings.ntk_ridge,
            state.val_lin, state.Y_val, state.weights_val, loss=settings.loss)
        return state._replace(solver=solver), np.asarray(report)

    @staticmethod
    def step(state, epoch, settings):
        solver = lbfgs_step(state.solver, state.lin, state.Y, state.weights,
                            settings.ntk_ridge, loss=settings.loss)
        return state._replace(solver=solver)

    @staticmethod
    def parameters(state):
        return LinearizedLBFGSPhase.params(state)

    @staticmethod
    def outputs(state, X, layer_scales=None):
        return linearized_logits(state.lin.params_star, LinearizedLBFGSPhase.params(state), X,
                                 state.lin.scales)

    @staticmethod
    def params(state):
        return delta_to_params(state.lin, state.solver.delta)

    @staticmethod
    def network(state):
        return params_to_numpy(LinearizedLBFGSPhase.params(state))


NTK_PHASES = {
    None: NoPhase,
    "frozen_jacobian": FrozenJacobianPhase,
    "linearized": LinearizedPhase,
    "kernel": KernelPhase,
}
"""The registry of NTK phases, keyed by the value of ``ntk_phase``: a new phase is a
class of the interface :class:`skntk._phase_api.NTKPhase` and one entry here."""
