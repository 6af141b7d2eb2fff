"""The closed-form kernel phase (``ntk_phase="kernel"``), dense and matrix-free.

Gradient flow of the linearised network under the mean squared error on one-hot
targets, with the trace-approximated kernel ``K_bar = K / C`` at ``theta*``
(Lee et al., NeurIPS 2019, eq. (9)-(10)). Both classes follow the
phase interface of :mod:`skntk._phases`.

- :class:`KernelPhase` forms the N x N training kernel and takes one symmetric
  eigendecomposition that serves every epoch (:mod:`skntk._kernel_flow`).
- :class:`MatrixFreeKernelPhase` never forms it: conjugate gradients at
  ``t = inf`` and a Lanczos approximation at finite ``t``, through kernel-block
  products (:mod:`skntk._matrix_free`); for training sets whose kernel exceeds
  ``max_kernel_bytes``.
"""

import math
import warnings
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._kernel_flow import (eigendecompose_kernel, flow_coefficients, flow_outputs,
                           flow_train_outputs, project_residual)
from ._matrix_free import (TrainingKernel, cross_kernel_apply, krylov_kernel_flow,
                           solve_kernel_flow_matrix_free)
from ._mlp import mlp_forward, params_to_numpy
from .ntk import _empirical_ntk, _working_set_bytes, check_kernel_budget, kernel_nbytes


class KernelState(NamedTuple):
    """State of the closed-form kernel phase (numpy float64 unless noted).

    ``params_star``: ``theta*`` (jax); ``X``: training inputs (jax, float32);
    ``F0``: (N, C) network outputs at ``theta*``; ``eigenvalues`` (N,),
    ``eigenvectors`` (N, N): of ``K_bar + rho I``; ``projection``: (N, C)
    ``V^T (Y - F0)``; ``coefficients``: (N, C) ``g(K_bar) (Y - F0)`` at the current
    flow time; ``train_logits``: (N, C) ``f_t(X)``; ``cross_kernels``: cache of
    ``K_bar(X', X)`` per evaluation set, keyed by ``id(X')``; ``layer_scales``: the
    per-layer scales ``D`` of the parameterisation (the kernel is ``J D J^T``;
    ``None``: standard).
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
    offset: str = "network"
    layer_scales: Any = None


KERNEL_BLOCK_SIZE = 512
"""``block_size`` of :func:`skntk.ntk.empirical_ntk` in the kernel phase."""

TRAINING_KERNEL_COPIES = 8
"""Peak of the dense training kernel, in float32 kernels: at the eigendecomposition the
float64 ``K_bar`` (two float32 kernels' worth), its symmetrised float64 copy, the
eigensolver's float64 copy and the float64 eigenvectors are alive together."""

CROSS_KERNEL_COPIES = 5
"""Peak of a cross kernel (validation or prediction), in float32 kernels: the float32
result of :func:`skntk.ntk.empirical_ntk`, its float64 copy and the float64 copy
divided by ``C``."""

_TRAINING_KERNEL = ("training kernel of ntk_phase='kernel'",
                    "use ntk_phase='frozen_jacobian' (which forms no kernel matrix), "
                    "kernel_solver='matrix_free' (or 'auto') or fewer training samples "
                    "(the working memory includes the kernel's float64 copies and "
                    "eigenvectors)")
_VALIDATION_KERNEL = ("validation cross kernel of ntk_phase='kernel'",
                      "use fewer validation samples (a smaller `X_val` or a lower "
                      "`validation_fraction`)")
_PREDICTION_KERNEL = ("prediction cross kernel of ntk_phase='kernel'",
                      "use ntk_phase='frozen_jacobian' or fewer training samples (prediction "
                      "forms it for blocks of rows against the whole training set)")
_EIGENVECTORS = "the eigenvectors of the training kernel, kept for the NTK epochs"


def _layer_sizes(params):
    return (params[0][0].shape[0], *(W.shape[1] for W, _ in params))


def _check_kernel(layer_sizes, n_rows, n_train, max_bytes, labels, copies=1, held_bytes=0,
                  held_what="other arrays"):
    """Refuse one kernel of the kernel phase, ``(n_rows, n_train)``, with ``copies - 1``
    more buffers of its size, the working memory of ``empirical_ntk`` and ``held_bytes``
    held beside it, when it exceeds ``max_bytes`` (``None``: the default budget).
    Returns the bytes counted."""
    what, fix_hint = labels
    extra = ((copies - 1) * kernel_nbytes(n_rows, n_train, np.float32)
             + _working_set_bytes(layer_sizes, n_rows, n_train, KERNEL_BLOCK_SIZE, False,
                                  False, np.dtype(np.float32).itemsize))
    return check_kernel_budget(n_rows, n_train, np.float32, max_bytes, what=what,
                               fix_hint=fix_hint, extra_bytes=extra,
                               budget_name="max_kernel_bytes", held_bytes=held_bytes,
                               held_what=held_what)


def check_kernel_phase_budget(layer_sizes, n_train, max_bytes, n_val=0, n_predict=0):
    """Check every kernel the kernel phase will build, before any is allocated.

    Each kernel is counted with everything alive beside it at its peak: the training
    kernel :data:`TRAINING_KERNEL_COPIES` times, a cross kernel
    :data:`CROSS_KERNEL_COPIES` times, each with the working memory of its
    computation, and the validation cross kernel also with the N x N float64
    eigenvectors that the phase keeps for its epochs.

    Parameters
    ----------
    layer_sizes : tuple of int
        ``(n_features, *hidden_layer_sizes, n_classes)``.
    n_train : int
        Training samples ``N``: the training kernel is ``N x N``.
    max_bytes : int or None
        Budget of the memory held at once (``max_kernel_bytes``).
    n_val, n_predict : int, default=0
        Rows of the validation cross kernel and of one prediction block (0: none).

    Returns
    -------
    n_bytes : int
        The largest of the counts, when all are within ``max_bytes``.

    Raises
    ------
    ValueError
        If one of them exceeds ``max_bytes``; the message gives its size and what
        lowers it.
    """
    counts = [_check_kernel(layer_sizes, n_train, n_train, max_bytes, _TRAINING_KERNEL,
                            copies=TRAINING_KERNEL_COPIES)]
    if n_val:
        counts.append(_check_kernel(layer_sizes, n_val, n_train, max_bytes,
                                    _VALIDATION_KERNEL, copies=CROSS_KERNEL_COPIES,
                                    held_bytes=kernel_nbytes(n_train, n_train, np.float64),
                                    held_what=_EIGENVECTORS))
    if n_predict:
        counts.append(_check_kernel(layer_sizes, n_predict, n_train, max_bytes,
                                    _PREDICTION_KERNEL, copies=CROSS_KERNEL_COPIES))
    return max(counts)


def offset_outputs(params_star, X, offset):
    """``f_0`` of the kernel regression on ``X``, float64 (n, C): the network at
    ``theta*`` (``offset="network"``) or zero (``offset="zero"``)."""
    F = np.asarray(mlp_forward(params_star, X), dtype=np.float64)
    return np.zeros_like(F) if offset == "zero" else F


def _kernel_bar(params_star, X1, X2, n_classes, max_bytes, labels, copies=CROSS_KERNEL_COPIES,
                mesh=None, held_bytes=0, held_what="other arrays", layer_scales=None):
    """``K_bar = K / C`` as a float64 numpy array, after a memory check (``copies`` and
    ``held_bytes`` as in :func:`_check_kernel`); row blocks split over ``mesh`` when
    given; ``K = J D J^T`` with ``D`` the ``layer_scales`` of the parameterisation."""
    _check_kernel(_layer_sizes(params_star), X1.shape[0], X2.shape[0], max_bytes, labels,
                  copies, held_bytes, held_what)
    K = _empirical_ntk(params_star, X1, X2, block_size=KERNEL_BLOCK_SIZE, max_bytes=np.inf,
                       mesh=mesh, scales=layer_scales)
    return np.asarray(K, dtype=np.float64) / n_classes


class KernelPhase:
    """``ntk_phase="kernel"``: closed-form gradient flow of the linearised network under
    the mean squared error on one-hot targets, with the trace-approximated kernel
    ``K_bar = K / C`` (Lee et al. 2019, eq. (9)-(10)). One symmetric
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
        # The float64 copies and the eigenvectors: see TRAINING_KERNEL_COPIES.
        K_bar = _kernel_bar(params_star, X, X, n_classes, settings.max_kernel_bytes,
                            _TRAINING_KERNEL, copies=TRAINING_KERNEL_COPIES,
                            mesh=settings.mesh, layer_scales=settings.layer_scales)
        F0 = offset_outputs(params_star, X, settings.kernel_offset)
        eigenvalues, eigenvectors = eigendecompose_kernel(K_bar, settings.ridge)
        projection = project_residual(eigenvectors, np.asarray(Y, dtype=np.float64) - F0)
        return KernelState(params_star, X, F0, eigenvalues, eigenvectors, projection,
                           np.zeros_like(F0), F0, {}, settings.max_kernel_bytes,
                           settings.kernel_offset, settings.layer_scales)

    @staticmethod
    def step(state, epoch, settings):
        # Kernel regression (epoch inf) needs no step size, which may be NaN then.
        t = math.inf if math.isinf(epoch) else settings.learning_rate * epoch
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
                                  state.max_kernel_bytes, _VALIDATION_KERNEL,
                                  held_bytes=state.eigenvectors.nbytes,
                                  held_what=_EIGENVECTORS, layer_scales=state.layer_scales)
            state.cross_kernels[id(X)] = K_cross
        F0_new = offset_outputs(state.params_star, X, state.offset)
        return flow_outputs(K_cross, state.coefficients, F0_new)

    @staticmethod
    def network(state):
        return params_to_numpy(state.params_star)

    @staticmethod
    def extra_state(state):
        return {"X_train": np.asarray(state.X), "coefficients": state.coefficients,
                "offset": state.offset, "layer_scales": state.layer_scales}

    @staticmethod
    def predict_logits(params_star, params, extra, X):
        """``extra`` may hold ``"max_kernel_bytes"``, the budget of the cross kernel, and
        ``"layer_scales"``, the parameterisation's ``D`` (absent: standard).

        Unlike :meth:`logits`, non-finite values (inputs so large that the kernel
        overflows) are passed on as ``inf``/``NaN`` logits for the caller to handle.
        """
        coefficients = extra["coefficients"]
        K_cross = _kernel_bar(params_star, X, jnp.asarray(extra["X_train"]), coefficients.shape[1],
                              extra.get("max_kernel_bytes"), _PREDICTION_KERNEL,
                              layer_scales=extra.get("layer_scales"))
        F0_new = offset_outputs(params_star, X, extra.get("offset", "network"))
        with np.errstate(all="ignore"):
            return F0_new + K_cross @ coefficients


class MatrixFreeState(NamedTuple):
    """State of the matrix-free kernel phase (numpy float64 unless noted).

    ``params_star``: ``theta*`` (jax); ``X``: training inputs (jax, float32); ``F0``:
    (N, C) outputs at ``theta*``; ``flow``: the Lanczos decomposition serving every
    finite flow time (``None`` at ``t = inf``); ``coefficients``: (N, C) ``A`` at the
    current flow time; ``train_logits``: (N, C) ``f_t(X)``; ``info``: the solver's
    record (``method``, ``iterations``, ``residual_norm``, ``converged``);
    ``layer_scales``: as in :class:`KernelState`.
    """

    params_star: Any
    X: Any
    F0: Any
    flow: Any
    coefficients: Any
    train_logits: Any
    info: dict
    offset: str = "network"
    layer_scales: Any = None


class MatrixFreeKernelPhase(KernelPhase):
    """``ntk_phase="kernel"`` without an N x N matrix: memory O(N (d + sum of widths)).

    At ``t = inf``, conjugate gradients on ``(K_bar + rho I) A = Y - F0`` with a
    Nystrom preconditioner (Hestenes and Stiefel 1952; Frangella, Tropp and Udell
    2023); at finite ``t``, one Lanczos decomposition of ``K_bar + rho I`` per output
    column, ``g`` applied to its tridiagonal matrix (Saad 1992), evaluated at every
    epoch's flow time. Predictions apply the cross kernel block by block.
    """

    @staticmethod
    def start(params_star, X, Y, settings):
        n_classes = Y.shape[1]
        F0 = offset_outputs(params_star, X, settings.kernel_offset)
        residual = np.asarray(Y, dtype=np.float64) - F0
        operator = TrainingKernel(params_star, X, n_classes, settings.ridge,
                                  max_bytes=settings.max_kernel_bytes,
                                  layer_scales=settings.layer_scales)
        scales = settings.layer_scales
        solver = dict(tol=settings.kernel_tol, max_iter=settings.kernel_max_iter,
                      operator=operator, layer_scales=scales)
        if math.isinf(settings.n_epochs):
            A, info = solve_kernel_flow_matrix_free(params_star, X, residual, math.inf,
                                                    settings.ridge, n_classes, **solver)
            return MatrixFreeState(params_star, X, F0, None, A, F0 + info["train_update"],
                                   _summary(info, settings), settings.kernel_offset, scales)
        t_end = settings.learning_rate * settings.n_epochs
        flow = (None if t_end == 0 else
                krylov_kernel_flow(params_star, X, residual, t_end, settings.ridge,
                                   n_classes, **solver))
        info = _summary(flow.info if flow else {"method": "lanczos", "iterations": 0}, settings)
        return MatrixFreeState(params_star, X, F0, flow, np.zeros_like(F0), F0, info,
                               settings.kernel_offset, scales)

    @staticmethod
    def step(state, epoch, settings):
        if state.flow is None:
            return state
        A, train_update, _ = state.flow.evaluate(settings.learning_rate * epoch)
        return state._replace(coefficients=A, train_logits=state.F0 + train_update)

    @staticmethod
    def logits(state, X):
        if X is state.X:
            return state.train_logits
        F0_new = offset_outputs(state.params_star, X, state.offset)
        return F0_new + cross_kernel_apply(state.params_star, X, state.X, state.coefficients,
                                           state.F0.shape[1], layer_scales=state.layer_scales)

    @staticmethod
    def extra_state(state):
        return {"X_train": np.asarray(state.X), "coefficients": state.coefficients,
                "solver": "matrix_free", "offset": state.offset,
                "layer_scales": state.layer_scales}

    @staticmethod
    def predict_logits(params_star, params, extra, X):
        coefficients = extra["coefficients"]
        F0_new = offset_outputs(params_star, X, extra.get("offset", "network"))
        return F0_new + cross_kernel_apply(params_star, X, jnp.asarray(extra["X_train"]),
                                           coefficients, coefficients.shape[1],
                                           layer_scales=extra.get("layer_scales"))


def _summary(info, settings):
    """The solver's record without its large arrays; warns when it did not converge."""
    keep = ("method", "iterations", "residual_norm", "converged", "restarts")
    summary = {k: info[k] for k in keep if k in info}
    summary["tol"] = settings.kernel_tol
    if not np.all(summary.get("converged", True)):
        warnings.warn(
            f"The matrix-free kernel solver ({summary.get('method')}) did not reach "
            f"kernel_tol={settings.kernel_tol} within kernel_max_iter="
            f"{settings.kernel_max_iter} iterations. Raise `kernel_max_iter` or "
            f"`kernel_tol` (about 1e-6 is the float32 floor), or add `kernel_ridge`.",
            ConvergenceWarning)
    return summary
