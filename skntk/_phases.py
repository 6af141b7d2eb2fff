"""The NTK phases: training continued around the switch point ``theta*``.

Each phase is a small class of pure static methods, looked up by the value of
``ntk_phase`` in :data:`NTK_PHASES`:

- ``start(params_star, X, Y, settings) -> state``: set up at the switch point;
- ``epochs(settings)``: the epoch numbers (1-based) that get a history row;
- ``step(state, epoch, settings) -> state``: the model after that epoch;
- ``logits(state, X) -> (n, C)``: the phase's model on any inputs;
- ``network(state) -> params``: the parameters reported as ``coefs_``/``intercepts_``;
- ``extra_state(state) -> dict`` of numpy arrays that prediction needs besides
  ``theta*`` and the final parameters;
- ``predict_logits(params_star, params, extra, X)``: the fitted model's logits from
  that numpy state (jax arrays of parameters).

Formulas: ``DESIGN.md`` ("NTK phases"); frozen-Jacobian and linearised training
after Lee et al., NeurIPS 2019, "Wide neural networks of any depth evolve as linear
models under gradient descent", eq. (5)-(8); the closed-form flow, ibid. eq. (9)-(10).
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._kernel_flow import (eigendecompose_kernel, flow_coefficients, flow_outputs,
                           flow_train_outputs, project_residual)
from ._devices import shard_rows
from ._mlp import mlp_forward, params_to_numpy
from .ntk import _working_set_bytes, check_kernel_budget, empirical_ntk, kernel_nbytes


class PhaseSettings(NamedTuple):
    """``learning_rate`` (eta), ``n_epochs`` (n, may be ``inf`` for the kernel phase),
    ``ridge`` (rho), ``max_kernel_bytes`` (budget of an N x N kernel) and ``mesh`` (the
    devices of data-parallel full-batch steps, ``None`` for one device)."""

    learning_rate: float
    n_epochs: float
    ridge: float = 0.0
    max_kernel_bytes: Any = None
    mesh: Any = None


def _tree_axpy(params, direction, scale):
    return jax.tree_util.tree_map(lambda p, d: p - scale * d, params, direction)


def _mean_residual(logits, Y, weights):
    """``(softmax(f) - Y) / N`` per sample; with ``weights`` (1 for real samples, 0 for
    the padding rows of a multi-device split) a weighted mean over the real ones."""
    residual = jax.nn.softmax(logits) - Y
    if weights is None:
        return residual / Y.shape[0]
    return residual * (weights / jnp.sum(weights))[:, None]


@jax.jit
def frozen_jacobian_step(params, params_star, X, Y, learning_rate, weights=None):
    """``theta <- theta - eta (1/N) sum_i J(x_i; theta*)^T (softmax(f(x_i; theta)) - y_i)``.

    The sum is one vector-Jacobian product at ``theta*`` (one backward pass); no
    per-sample Jacobian is formed. ``weights`` (N,), optional, masks padding rows.
    """
    residual = _mean_residual(mlp_forward(params, X), Y, weights)
    _, vjp_star = jax.vjp(lambda p: mlp_forward(p, X), params_star)
    (direction,) = vjp_star(residual)
    return _tree_axpy(params, direction, learning_rate)


@jax.jit
def linearized_logits(params_star, params, X):
    """``f_lin(x; theta) = f(x; theta*) + J(x; theta*) (theta - theta*)``, one JVP."""
    delta = jax.tree_util.tree_map(jnp.subtract, params, params_star)
    f_star, jvp = jax.jvp(lambda p: mlp_forward(p, X), (params_star,), (delta,))
    return f_star + jvp


@jax.jit
def linearized_step(params, params_star, X, Y, learning_rate, weights=None):
    """Full-batch gradient step on the mean cross-entropy of the linearised model;
    ``weights`` (N,), optional, masks padding rows."""
    delta = jax.tree_util.tree_map(jnp.subtract, params, params_star)
    f_star, vjp_star = jax.vjp(lambda p: mlp_forward(p, X), params_star)
    _, jvp = jax.jvp(lambda p: mlp_forward(p, X), (params_star,), (delta,))
    residual = _mean_residual(f_star + jvp, Y, weights)
    (direction,) = vjp_star(residual)
    return _tree_axpy(params, direction, learning_rate)


class NetworkState(NamedTuple):
    """``params``: current parameters; ``params_star``: the switch point; ``X``, ``Y``:
    training inputs (N', d) and one-hot targets (N', C), jax arrays, their rows split
    over the devices of ``settings.mesh`` (padded to N' rows); ``weights``: (N',), 1
    for the N real samples, 0 for padding, or ``None`` on one device."""

    params: Any
    params_star: Any
    X: Any
    Y: Any
    weights: Any = None


class NoPhase:
    """``ntk_phase=None``: the SGD network as it is."""

    @staticmethod
    def start(params_star, X, Y, settings):
        mesh = settings.mesh
        if mesh is None:
            return NetworkState(params_star, params_star, X, Y)
        weights = shard_rows(np.ones(X.shape[0], np.float32), mesh)
        return NetworkState(params_star, params_star, shard_rows(X, mesh), shard_rows(Y, mesh),
                            weights)

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
                                      settings.learning_rate, state.weights)
        return state._replace(params=params)


class LinearizedPhase(NoPhase):
    """``ntk_phase="linearized"``: the first-order Taylor model around ``theta*``."""

    @staticmethod
    def step(state, epoch, settings):
        params = linearized_step(state.params, state.params_star, state.X, state.Y,
                                 settings.learning_rate, state.weights)
        return state._replace(params=params)

    @staticmethod
    def logits(state, X):
        return linearized_logits(state.params_star, state.params, X)

    @staticmethod
    def predict_logits(params_star, params, extra, X):
        return linearized_logits(params_star, params, X)


class KernelState(NamedTuple):
    """State of the closed-form kernel phase (numpy float64 unless noted).

    ``params_star``: ``theta*`` (jax); ``X``: training inputs (jax, float32);
    ``F0``: (N, C) network outputs at ``theta*``; ``eigenvalues`` (N,),
    ``eigenvectors`` (N, N): of ``K_bar + rho I``; ``projection``: (N, C)
    ``V^T (Y - F0)``; ``coefficients``: (N, C) ``g(K_bar) (Y - F0)`` at the current
    flow time; ``train_logits``: (N, C) ``f_t(X)``; ``cross_kernels``: cache of
    ``K_bar(X', X)`` per evaluation set, keyed by ``id(X')``.
    """

    params_star: Any
    X: Any
    F0: Any
    eigenvalues: Any
    eigenvectors: Any
    projection: Any
    coefficients: Any
    train_logits: Any
    cross_kernels: dict
    max_kernel_bytes: Any = None


KERNEL_BLOCK_SIZE = 512
"""``block_size`` of :func:`skntk.ntk.empirical_ntk` in the kernel phase."""

TRAINING_KERNEL_COPIES = 5
"""The training kernel is held about five times over (in float32 units): the float32
kernel, its float64 copy and the float64 eigenvectors."""

_TRAINING_KERNEL = ("training kernel of ntk_phase='kernel'",
                    "use ntk_phase='frozen_jacobian' (which forms no kernel matrix) or "
                    "fewer training samples (the working memory includes the kernel's "
                    "float64 copy and eigenvectors)")
_VALIDATION_KERNEL = ("validation cross kernel of ntk_phase='kernel'",
                      "use fewer validation samples (a smaller `X_val` or a lower "
                      "`validation_fraction`)")
_PREDICTION_KERNEL = ("prediction cross kernel of ntk_phase='kernel'",
                      "use ntk_phase='frozen_jacobian' or fewer training samples (prediction "
                      "forms it for blocks of rows against the whole training set)")


def _layer_sizes(params):
    return (params[0][0].shape[0], *(W.shape[1] for W, _ in params))


def _check_kernel(layer_sizes, n_rows, n_train, max_bytes, labels, copies=1):
    """Refuse one kernel of the kernel phase, ``(n_rows, n_train)``, with ``copies - 1``
    more buffers of its size and the working memory of ``empirical_ntk``, when it
    exceeds ``max_bytes`` (``None``: the default budget)."""
    what, fix_hint = labels
    extra = ((copies - 1) * kernel_nbytes(n_rows, n_train, np.float32)
             + _working_set_bytes(layer_sizes, n_rows, n_train, KERNEL_BLOCK_SIZE, False,
                                  False, np.dtype(np.float32).itemsize))
    return check_kernel_budget(n_rows, n_train, np.float32, max_bytes, what=what,
                               fix_hint=fix_hint, extra_bytes=extra,
                               budget_name="max_kernel_bytes")


def check_kernel_phase_budget(layer_sizes, n_train, max_bytes, n_val=0, n_predict=0):
    """Check every kernel the kernel phase will build, before any is allocated.

    Parameters
    ----------
    layer_sizes : tuple of int
        ``(n_features, *hidden_layer_sizes, n_classes)``.
    n_train : int
        Training samples ``N``: the training kernel is ``N x N``.
    max_bytes : int or None
        Budget of one kernel with its working memory (``max_kernel_bytes``).
    n_val, n_predict : int, default=0
        Rows of the validation cross kernel and of one prediction block (0: none).

    Raises
    ------
    ValueError
        If one of them exceeds ``max_bytes``; the message gives its size and what
        lowers it.
    """
    _check_kernel(layer_sizes, n_train, n_train, max_bytes, _TRAINING_KERNEL,
                  copies=TRAINING_KERNEL_COPIES)
    if n_val:
        _check_kernel(layer_sizes, n_val, n_train, max_bytes, _VALIDATION_KERNEL)
    if n_predict:
        _check_kernel(layer_sizes, n_predict, n_train, max_bytes, _PREDICTION_KERNEL)


def _kernel_bar(params_star, X1, X2, n_classes, max_bytes, labels, copies=1, mesh=None):
    """``K_bar = K / C`` as a float64 numpy array, after a memory check; row blocks split
    over ``mesh`` when given."""
    _check_kernel(_layer_sizes(params_star), X1.shape[0], X2.shape[0], max_bytes, labels,
                  copies)
    K = empirical_ntk(params_star, X1, X2, block_size=KERNEL_BLOCK_SIZE, max_bytes=np.inf,
                      mesh=mesh)
    return np.asarray(K, dtype=np.float64) / n_classes


class KernelPhase:
    """``ntk_phase="kernel"``: closed-form gradient flow of the linearised network under
    the mean squared error on one-hot targets, with the trace-approximated kernel
    ``K_bar = K / C`` (``DESIGN.md``; Lee et al. 2019, eq. (9)-(10)). One symmetric
    eigendecomposition of ``K_bar + rho I`` serves every epoch; see
    :mod:`skntk._kernel_flow` for the numerics (eigenvalues clipped at 0, null
    directions dropped, which is exact for a Gram matrix).
    """

    @staticmethod
    def epochs(settings):
        if math.isinf(settings.n_epochs):
            return [math.inf]
        return range(1, int(settings.n_epochs) + 1)

    @staticmethod
    def start(params_star, X, Y, settings):
        n_samples, n_classes = Y.shape
        # The float64 copy and the eigenvectors: budget 5x the float32 kernel.
        K_bar = _kernel_bar(params_star, X, X, n_classes, settings.max_kernel_bytes,
                            _TRAINING_KERNEL, copies=TRAINING_KERNEL_COPIES,
                            mesh=settings.mesh)
        F0 = np.asarray(mlp_forward(params_star, X), dtype=np.float64)
        eigenvalues, eigenvectors = eigendecompose_kernel(K_bar, settings.ridge)
        projection = project_residual(eigenvectors, np.asarray(Y, dtype=np.float64) - F0)
        return KernelState(params_star, X, F0, eigenvalues, eigenvectors, projection,
                           np.zeros_like(F0), F0, {}, settings.max_kernel_bytes)

    @staticmethod
    def step(state, epoch, settings):
        t = settings.learning_rate * epoch
        n_samples = state.F0.shape[0]
        args = (state.eigenvalues, state.eigenvectors, state.projection)
        coefficients = flow_coefficients(*args, t, n_samples, projected=True)
        train_logits = flow_train_outputs(*args, state.F0, t, n_samples, settings.ridge,
                                          projected=True)
        return state._replace(coefficients=coefficients, train_logits=train_logits)

    @staticmethod
    def logits(state, X):
        if X is state.X:
            return state.train_logits
        K_cross = state.cross_kernels.get(id(X))
        if K_cross is None:
            K_cross = _kernel_bar(state.params_star, X, state.X, state.F0.shape[1],
                                  state.max_kernel_bytes, _VALIDATION_KERNEL)
            state.cross_kernels[id(X)] = K_cross
        F0_new = np.asarray(mlp_forward(state.params_star, X), dtype=np.float64)
        return flow_outputs(K_cross, state.coefficients, F0_new)

    @staticmethod
    def network(state):
        return params_to_numpy(state.params_star)

    @staticmethod
    def extra_state(state):
        return {"X_train": np.asarray(state.X), "coefficients": state.coefficients}

    @staticmethod
    def predict_logits(params_star, params, extra, X):
        """``extra`` may hold ``"max_kernel_bytes"``, the budget of the cross kernel.

        Unlike :meth:`logits`, non-finite values (inputs so large that the kernel
        overflows) are passed on as ``inf``/``NaN`` logits for the caller to handle.
        """
        coefficients = extra["coefficients"]
        K_cross = _kernel_bar(params_star, X, jnp.asarray(extra["X_train"]), coefficients.shape[1],
                              extra.get("max_kernel_bytes"), _PREDICTION_KERNEL)
        F0_new = np.asarray(mlp_forward(params_star, X), dtype=np.float64)
        with np.errstate(all="ignore"):
            return F0_new + K_cross @ coefficients


NTK_PHASES = {
    None: NoPhase,
    "frozen_jacobian": FrozenJacobianPhase,
    "linearized": LinearizedPhase,
    "kernel": KernelPhase,
}
