"""The NTK phases: training continued around the switch point ``theta*``.

Each phase is a small class of pure static methods, looked up by the value of
``ntk_phase`` in :data:`NTK_PHASES`:

- ``start(params_star, X, Y, settings) -> state``: set up at the switch point;
- ``epochs(settings)``: the epoch numbers (1-based) that get a history row;
- ``step(state, epoch, settings) -> state``: the model after that epoch;
- ``logits(state, X) -> (n, C)``: the phase's model on any inputs;
- ``network(state) -> params``: the parameters reported as ``coefs_``/``intercepts_``;
- ``extra_state(state) -> dict`` of numpy arrays that prediction needs besides
  ``theta*`` and the final parameters (the kernel phase's ``dual_coef`` and ``X_fit``
  become the estimator's public ``dual_coef_`` and ``X_fit_``, and are read back
  from them);
- ``predict_logits(params_star, params, extra, X)``: the fitted model's logits from
  that numpy state (jax arrays of parameters);
- kernel phases only: ``predict_variance(params_star, extra, X, block_size)``, the
  NTK-GP posterior variance at ``t = inf``.

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
from ._kernel_phase import KernelPhase, MatrixFreeKernelPhase
from ._linearized import (delta_to_params, lbfgs_epoch_and_metrics, lbfgs_init, lbfgs_step,
                          linearization)
from ._mlp import mlp_forward, params_to_numpy
from ._parameterization import scale_params


class PhaseSettings(NamedTuple):
    """``learning_rate`` (eta), ``n_epochs`` (n, may be ``inf`` for the kernel phase),
    ``ridge`` (rho), ``max_kernel_bytes`` (budget of an N x N kernel), ``mesh`` (the
    devices of data-parallel full-batch steps, ``None`` for one device), the
    matrix-free kernel solver's ``kernel_tol`` and ``kernel_max_iter``, and
    ``kernel_offset``, the function the kernel regression starts from (``"network"``:
    ``f(theta*)``; ``"zero"``), ``ntk_ridge``, the penalty
    ``(ntk_ridge / 2) ||omega - omega*||^2`` of the linearised phase (in the trained
    coordinates), and ``layer_scales``, the per-layer scales ``D`` of the
    parameterisation (:func:`skntk._parameterization.layer_scales`; ``None``:
    standard)."""

    learning_rate: float
    n_epochs: float
    ridge: float = 0.0
    max_kernel_bytes: Any = None
    mesh: Any = None
    kernel_tol: float = 1e-5
    kernel_max_iter: int = 500
    kernel_offset: str = "network"
    ntk_ridge: float = 0.0
    layer_scales: Any = None


def _tree_axpy(params, direction, scale):
    return jax.tree_util.tree_map(lambda p, d: p - scale * d, params, direction)


def _mean_residual(logits, Y, weights):
    """``(softmax(f) - Y) / N`` per sample; with ``weights`` (1 for real samples, 0 for
    the padding rows of a bucket or a multi-device split) a weighted mean over the real
    ones."""
    residual = jax.nn.softmax(logits) - Y
    if weights is None:
        return residual / Y.shape[0]
    return residual * (weights / jnp.sum(weights))[:, None]


@partial(jax.jit, static_argnames="layer_scales")
def frozen_jacobian_step(params, params_star, X, Y, learning_rate, weights=None,
                         layer_scales=None):
    """``theta <- theta - eta (1/N) sum_i D J(x_i; theta*)^T (softmax(f(x_i; theta)) - y_i)``.

    The sum is one vector-Jacobian product at ``theta*`` (one backward pass); no
    per-sample Jacobian is formed. ``weights`` (N,), optional, masks padding rows.
    ``layer_scales``: ``D`` (static; ``None``: the identity).
    """
    residual = _mean_residual(mlp_forward(params, X), Y, weights)
    _, vjp_star = jax.vjp(lambda p: mlp_forward(p, X), params_star)
    (direction,) = vjp_star(residual)
    return _tree_axpy(params, scale_params(direction, layer_scales), learning_rate)


@jax.jit
def linearized_logits(params_star, params, X):
    """``f_lin(x; theta) = f(x; theta*) + J(x; theta*) (theta - theta*)``, one JVP."""
    delta = jax.tree_util.tree_map(jnp.subtract, params, params_star)
    f_star, jvp = jax.jvp(lambda p: mlp_forward(p, X), (params_star,), (delta,))
    return f_star + jvp


@partial(jax.jit, static_argnames="layer_scales")
def linearized_step(params, params_star, X, Y, learning_rate, weights=None, ridge=0.0,
                    layer_scales=None):
    """Full-batch gradient step on the mean cross-entropy of the linearised model plus
    ``(ridge / 2) ||omega - omega*||^2``, in the trained coordinates ``omega``:
    ``theta -= eta (D J^T r + ridge (theta - theta*))``; ``weights`` (N,), optional,
    masks padding rows; ``layer_scales``: ``D`` (static; ``None``: the identity,
    ``omega = theta``)."""
    delta = jax.tree_util.tree_map(jnp.subtract, params, params_star)
    f_star, vjp_star = jax.vjp(lambda p: mlp_forward(p, X), params_star)
    _, jvp = jax.jvp(lambda p: mlp_forward(p, X), (params_star,), (delta,))
    residual = _mean_residual(f_star + jvp, Y, weights)
    (direction,) = vjp_star(residual)
    direction = jax.tree_util.tree_map(lambda g, d: g + ridge * d,
                                       scale_params(direction, layer_scales), delta)
    return _tree_axpy(params, direction, learning_rate)


class NetworkState(NamedTuple):
    """``params``: current parameters; ``params_star``: the switch point; ``X``, ``Y``:
    training inputs (N', d) and one-hot targets (N', C), jax arrays, padded to N' rows
    (a bucket size, and a multiple of the devices of ``settings.mesh`` over which their
    rows are split); ``weights``: (N',), 1 for the N real samples, 0 for padding, or
    ``None`` when there is no padding."""

    params: Any
    params_star: Any
    X: Any
    Y: Any
    weights: Any = None


class NoPhase:
    """``ntk_phase=None``: the SGD network as it is."""

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        """``weights`` (N,), optional: 0 for padding rows of ``X`` and ``Y`` (a bucket);
        ``val``: the validation rows (:class:`skntk._buckets.Rows`) or ``None``, for the
        phases that report their metrics with each step (:meth:`step_and_report`)."""
        mesh = settings.mesh
        if mesh is None:
            return NetworkState(params_star, params_star, X, Y, weights)
        weights = np.ones(X.shape[0], np.float32) if weights is None else weights
        return NetworkState(params_star, params_star, shard_rows(X, mesh), shard_rows(Y, mesh),
                            shard_rows(weights, mesh))

    @staticmethod
    def epochs(settings):
        return range(1, int(settings.n_epochs) + 1)

    @staticmethod
    def step(state, epoch, settings):
        return state

    @staticmethod
    def logits(state, X):
        return mlp_forward(state.params, X)

    @staticmethod
    def network(state):
        return params_to_numpy(state.params)

    @staticmethod
    def extra_state(state):
        return {}

    @staticmethod
    def predict_logits(params_star, params, extra, X):
        return mlp_forward(params, X)


class FrozenJacobianPhase(NoPhase):
    """``ntk_phase="frozen_jacobian"``: the network trained with the Jacobian frozen at ``theta*``."""

    @staticmethod
    def step(state, epoch, settings):
        params = frozen_jacobian_step(state.params, state.params_star, state.X, state.Y,
                                      settings.learning_rate, state.weights,
                                      layer_scales=settings.layer_scales)
        return state._replace(params=params)


class LinearizedPhase(NoPhase):
    """``ntk_phase="linearized"``: the first-order Taylor model around ``theta*``, by
    gradient descent (``ntk_solver="gd"``)."""

    @staticmethod
    def step(state, epoch, settings):
        params = linearized_step(state.params, state.params_star, state.X, state.Y,
                                 settings.learning_rate, state.weights,
                                 settings.ntk_ridge, layer_scales=settings.layer_scales)
        return state._replace(params=params)

    @staticmethod
    def logits(state, X):
        return linearized_logits(state.params_star, state.params, X)

    @staticmethod
    def predict_logits(params_star, params, extra, X):
        return linearized_logits(params_star, params, X)


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
    linearised cross-entropy is convex, so a quasi-Newton method needs far fewer
    passes than gradient descent; each epoch is one iteration (one Jacobian-vector
    and one vector-Jacobian product at ``theta*``); the line search sets every step,
    so ``settings.learning_rate`` is unused."""

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        base = NoPhase.start(params_star, X, Y, settings, weights)
        weights = base.weights
        if weights is None:
            weights = jnp.ones(base.X.shape[0], base.X.dtype)
        lin = linearization(params_star, base.X, settings.layer_scales)
        state = LBFGSNetworkState(lin, lbfgs_init(lin, base.Y, weights), base.X, base.Y,
                                  weights)
        if val is None:
            return state
        val_weights = val.weights
        if val_weights is None:
            val_weights = jnp.ones(val.X.shape[0], val.X.dtype)
        return state._replace(val_lin=linearization(params_star, val.X, settings.layer_scales),
                              Y_val=val.Y,
                              weights_val=val_weights)

    @staticmethod
    def step_and_report(state, settings):
        """One iteration and ``[finite, train_loss, train_accuracy, val_loss,
        val_accuracy]`` in one compiled program (see
        :func:`skntk._linearized.lbfgs_epoch_and_metrics`)."""
        solver, report = lbfgs_epoch_and_metrics(
            state.solver, state.lin, state.Y, state.weights, settings.ntk_ridge,
            state.val_lin, state.Y_val, state.weights_val)
        return state._replace(solver=solver), report

    @staticmethod
    def step(state, epoch, settings):
        solver = lbfgs_step(state.solver, state.lin, state.Y, state.weights,
                            settings.ntk_ridge)
        return state._replace(solver=solver)

    @staticmethod
    def logits(state, X):
        return linearized_logits(state.lin.params_star, LinearizedLBFGSPhase.params(state), X)

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

KERNEL_SOLVERS = {"dense": KernelPhase, "matrix_free": MatrixFreeKernelPhase}


def phase_class(ntk_phase, kernel_solver=None, ntk_solver=None):
    """The phase class of ``ntk_phase``; for ``"kernel"``, that of ``kernel_solver``
    (``"dense"`` or ``"matrix_free"``, default dense); for ``"linearized"``, that of
    ``ntk_solver`` (``"gd"`` or ``"lbfgs"``, default gradient descent)."""
    if ntk_phase == "kernel":
        return KERNEL_SOLVERS[kernel_solver or "dense"]
    if ntk_phase == "linearized" and ntk_solver == "lbfgs":
        return LinearizedLBFGSPhase
    return NTK_PHASES[ntk_phase]
