"""The closed-form kernel phase (``ntk_phase="kernel"``), dense and matrix-free.

Gradient flow of the linearised network under the mean squared error on the encoded
targets (one-hot classes of a classifier, the target values of a regressor), with the
trace-approximated kernel ``K_bar = K / C`` over the ``C`` outputs at ``theta*``
(Lee et al., NeurIPS 2019, eq. (9)-(10)). Both classes follow the phase interface
:class:`skntk._phase_api.NTKPhase`; :meth:`KernelPhase.variant` picks one by
``kernel_solver``.

- :class:`KernelPhase` forms the N x N training kernel and takes one symmetric
  eigendecomposition that serves every epoch (:mod:`skntk._kernel_flow`).
- :class:`MatrixFreeKernelPhase` never forms it: conjugate gradients at
  ``t = inf`` and a Lanczos approximation at finite ``t``, through kernel-block
  products (:mod:`skntk._matrix_free`); for training sets whose kernel exceeds
  ``max_kernel_bytes``.

Both end with the dual coefficients ``A`` (the estimator's ``dual_coef_``) on the
training inputs (``X_fit_``): ``f_t(x) = f_0(x) + K_bar(x, X) A``. At ``t = inf`` they
also give the posterior variance of the Gaussian process whose prior covariance is
``K_bar`` (:meth:`KernelPhase.predict_variance`; He, Lakshminarayanan and Teh,
NeurIPS 2020, "Bayesian deep ensembles via the neural tangent kernel"), whose
posterior mean is the kernel regression (Lee et al. 2019, sec. 2.3).
"""

import math
import warnings
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from ._buckets import pad_rows
from ._kernel_flow import (eigendecompose_kernel, flow_coefficients, flow_outputs,
                           flow_train_outputs, project_residual)
from ._matrix_free import (TrainingKernel, _conjugate_gradients, cross_kernel_apply,
                           kernel_diagonal, krylov_kernel_flow, nystrom_preconditioner,
                           solve_kernel_flow_matrix_free)
from ._mlp import mlp_forward, params_to_numpy
from ._phase_api import PREDICT_BLOCK, NTKPhase, host_metrics
from .ntk import _empirical_ntk, _working_set_bytes, check_kernel_budget, kernel_nbytes


class KernelState(NamedTuple):
    """State of the closed-form kernel phase (numpy float64 unless noted).

    ``params_star``: ``theta*`` (jax); ``X``: training inputs (jax, float32);
    ``F0``: (N, C) network outputs at ``theta*``; ``eigenvalues`` (N,),
    ``eigenvectors`` (N, N): of ``K_bar + rho I``; ``projection``: (N, C)
    ``V^T (Y - F0)``; ``coefficients``: (N, C) ``g(K_bar) (Y - F0)`` at the current
    flow time; ``train_logits``: (N, C) ``f_t(X)``; ``cross_kernels``: cache of
    ``K_bar(X', X)`` per evaluation set, keyed by ``id(X')``; ``ridge``: ``rho``;
    ``flow_time``: ``t`` of ``coefficients`` (0 before the first step);
    ``layer_scales``: the per-layer scales ``D`` of the parameterisation (the kernel
    is ``J D J^T``; ``None``: standard).
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
    ridge: float = 0.0
    flow_time: float = 0.0
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
_VARIANCE_TRAINING_KERNEL = (
    "training kernel of predict_variance",
    "refit with kernel_solver='matrix_free' (which forms no N x N kernel) or a larger "
    "max_kernel_bytes (the working memory includes the kernel's float64 copies)")
_VARIANCE_CROSS_KERNEL = (
    "cross kernel of predict_variance",
    "refit with a larger max_kernel_bytes or on fewer training samples (predict_variance "
    "forms it for blocks of 256 rows against the whole training set, beside the factored "
    "training kernel)")


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


class KernelPhase(NTKPhase):
    """``ntk_phase="kernel"``: closed-form gradient flow of the linearised network under
    the mean squared error on the encoded targets, with the trace-approximated kernel
    ``K_bar = K / C`` (Lee et al. 2019, eq. (9)-(10)). One symmetric
    eigendecomposition of ``K_bar + rho I`` serves every epoch; see
    :mod:`skntk._kernel_flow` for the numerics (eigenvalues clipped at 0, null
    directions dropped, which is exact for a Gram matrix). Works on the real training
    rows only (its kernels and solvers are exact on them and sized to them anyway).
    """

    kernel_solver = "dense"
    padded_rows = False
    auto_epochs = math.inf
    early_stopping = False
    # It minimises the squared error, so a classifier's cross-entropy may rise.
    lowers_training_loss = False
    diverging_part = "the kernel-flow coefficients"
    fitted_attributes = ("dual_coef_", "X_fit_", "kernel_offset_", "kernel_ridge_",
                         "kernel_flow_time_", "kernel_tol_", "kernel_max_iter_",
                         "max_kernel_bytes_")
    has_variance = True

    @classmethod
    def check_params(cls, ntk_solver, ntk_epochs):
        return None  # every epoch count, numpy.inf included (kernel regression)

    @classmethod
    def resolve(cls, config, layer_sizes, n_train, n_val):
        """The kernel solver: ``"matrix_free"`` as asked, or under ``"auto"`` exactly
        when the dense kernels would exceed ``max_kernel_bytes`` (which
        ``kernel_solver="dense"`` raises for, before training)."""
        if config.kernel_solver == "matrix_free":
            return None, "matrix_free"
        try:
            check_kernel_phase_budget(layer_sizes, n_train, config.max_kernel_bytes,
                                      n_val=n_val, n_predict=PREDICT_BLOCK)
        except ValueError:
            if config.kernel_solver == "dense":
                raise
            return None, "matrix_free"  # "auto": too large to form, so never formed
        return None, "dense"

    @classmethod
    def variant(cls, ntk_solver, kernel_solver):
        return MatrixFreeKernelPhase if kernel_solver == "matrix_free" else KernelPhase

    @classmethod
    def auto_learning_rate(cls, settings, step_for_curvature):
        """The step of gradient descent on the squared error (Hessian ``I`` in the
        outputs), whatever the estimator's loss; NaN at infinite flow time (kernel
        regression needs none)."""
        if math.isinf(settings.n_epochs):
            return math.nan
        return step_for_curvature(1.0)

    @staticmethod
    def epochs(settings):
        if math.isinf(settings.n_epochs):
            return [math.inf]
        return range(1, int(settings.n_epochs) + 1)

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        """The training kernel and its eigendecomposition on the real rows ``X``
        (``weights`` and ``val`` are unused: see :attr:`padded_rows`)."""
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
                           settings.kernel_offset, settings.ridge,
                           layer_scales=settings.layer_scales)

    @staticmethod
    def step(state, epoch, settings):
        # Kernel regression (epoch inf) needs no step size, which may be NaN then.
        t = math.inf if math.isinf(epoch) else settings.learning_rate * epoch
        n_samples = state.F0.shape[0]
        args = (state.eigenvalues, state.eigenvectors, state.projection)
        coefficients = flow_coefficients(*args, t, n_samples, projected=True)
        train_logits = flow_train_outputs(*args, state.F0, t, n_samples, settings.ridge,
                                          projected=True)
        return state._replace(coefficients=coefficients, train_logits=train_logits,
                              flow_time=t)

    @classmethod
    def report(cls, state, train, val, settings):
        """Finiteness of the coefficients and training outputs, and the metrics of the
        estimator's loss (computed on the host)."""
        finite = (np.isfinite(state.coefficients).all()
                  and np.isfinite(state.train_logits).all())
        if not finite:
            return np.array([0.0] + [math.nan] * 4)
        return np.array([1.0, *host_metrics(cls.outputs, settings.loss, state, train, val)])

    @staticmethod
    def outputs(state, X):
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
    def fitted_state(state, settings):
        """The model ``f(x) = offset(x) + K_bar(x, X_fit_) dual_coef_``:
        ``dual_coef_`` (N, C) float64, ``X_fit_`` (N, d) float32, ``kernel_offset_``,
        ``kernel_ridge_`` (``rho``), ``kernel_flow_time_`` (``t``), and the budget and
        solver settings that prediction and :meth:`predict_variance` use
        (``max_kernel_bytes_``, ``kernel_tol_``, ``kernel_max_iter_``)."""
        return {"X_fit_": np.array(state.X), "dual_coef_": state.coefficients,
                "kernel_offset_": state.offset, "kernel_ridge_": float(state.ridge),
                "kernel_flow_time_": float(state.flow_time),
                "kernel_tol_": float(settings.kernel_tol),
                "kernel_max_iter_": int(settings.kernel_max_iter),
                "max_kernel_bytes_": settings.max_kernel_bytes}

    @staticmethod
    def variance_defined(fitted):
        return math.isinf(fitted["kernel_flow_time_"])

    @staticmethod
    def predict_outputs(params_star, params, fitted, X):
        """``offset(X) + K_bar(X, X_fit_) dual_coef_``, the cross kernel within
        ``max_kernel_bytes_``.

        Unlike :meth:`outputs`, non-finite values (inputs so large that the kernel
        overflows) are passed on as ``inf``/``NaN`` outputs for the caller to handle.
        """
        dual_coef = fitted["dual_coef_"]
        K_cross = _kernel_bar(params_star, X, jnp.asarray(fitted["X_fit_"]), dual_coef.shape[1],
                              fitted["max_kernel_bytes_"], _PREDICTION_KERNEL,
                              layer_scales=fitted["layer_scales"])
        F0_new = offset_outputs(params_star, X, fitted["kernel_offset_"])
        with np.errstate(all="ignore"):
            return F0_new + K_cross @ dual_coef

    @staticmethod
    def training_inverse(params_star, fitted):
        """``(K_bar + rho I)^+`` of the training kernel, factored once
        (:class:`DenseInverse`), for :meth:`predict_variance`."""
        X_fit = jnp.asarray(fitted["X_fit_"])
        K_bar = _kernel_bar(params_star, X_fit, X_fit, fitted["dual_coef_"].shape[1],
                            fitted["max_kernel_bytes_"], _VARIANCE_TRAINING_KERNEL,
                            copies=TRAINING_KERNEL_COPIES,
                            layer_scales=fitted["layer_scales"])
        return DenseInverse.factor(K_bar, fitted["kernel_ridge_"])

    @classmethod
    def predict_variance(cls, params_star, fitted, X, block_size):
        """Posterior variance of the NTK Gaussian process at ``t = inf``, per sample.

        ``var(x) = K_bar(x, x) - K_bar(x, X) (K_bar(X, X) + rho I)^+ K_bar(X, x)`` with
        ``X = fitted["X_fit_"]``, ``rho = fitted["kernel_ridge_"]`` and ``C`` the columns of
        ``fitted["dual_coef_"]``; the prior variance ``K_bar(x, x)`` from the layer
        factors (:func:`skntk._matrix_free.kernel_diagonal`) and the cross kernel, for
        ``block_size`` rows at a time (the last block zero-padded, so one shape
        compiles).

        Returns
        -------
        variance : ndarray of shape (n,), float64, clipped at 0 (rounding).
        """
        n_classes = fitted["dual_coef_"].shape[1]
        X_fit = jnp.asarray(fitted["X_fit_"])
        inverse = cls.training_inverse(params_star, fitted)
        X = np.asarray(X)
        n = X.shape[0]
        padded = pad_rows(X, -(-n // block_size) * block_size)
        variance = np.empty(n)
        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            rows = jnp.asarray(padded[start:start + block_size])
            prior = kernel_diagonal(params_star, rows, n_classes, block_size=block_size,
                                    layer_scales=fitted["layer_scales"])
            K_cross = _kernel_bar(params_star, rows, X_fit, n_classes,
                                  fitted["max_kernel_bytes_"], _VARIANCE_CROSS_KERNEL,
                                  copies=inverse.cross_copies, held_bytes=inverse.nbytes,
                                  held_what=inverse.description,
                                  layer_scales=fitted["layer_scales"])
            variance[start:stop] = (prior[:stop - start]
                                    - inverse.quadratic(K_cross[:stop - start]))
        return np.clip(variance, 0.0, None)


class MatrixFreeState(NamedTuple):
    """State of the matrix-free kernel phase (numpy float64 unless noted).

    ``params_star``: ``theta*`` (jax); ``X``: training inputs (jax, float32); ``F0``:
    (N, C) outputs at ``theta*``; ``flow``: the Lanczos decomposition serving every
    finite flow time (``None`` at ``t = inf``); ``coefficients``: (N, C) ``A`` at the
    current flow time; ``train_logits``: (N, C) ``f_t(X)``; ``info``: the solver's
    record (``method``, ``iterations``, ``residual_norm``, ``converged``); ``ridge``:
    ``rho``; ``flow_time``: ``t`` of ``coefficients``; ``layer_scales``: as in
    :class:`KernelState`.
    """

    params_star: Any
    X: Any
    F0: Any
    flow: Any
    coefficients: Any
    train_logits: Any
    info: dict
    offset: str = "network"
    ridge: float = 0.0
    flow_time: float = 0.0
    layer_scales: Any = None


class MatrixFreeKernelPhase(KernelPhase):
    """``ntk_phase="kernel"`` without an N x N matrix: memory O(N (d + sum of widths)).

    At ``t = inf``, conjugate gradients on ``(K_bar + rho I) A = Y - F0`` with a
    Nystrom preconditioner (Hestenes and Stiefel 1952; Frangella, Tropp and Udell
    2023); at finite ``t``, one Lanczos decomposition of ``K_bar + rho I`` per output
    column, ``g`` applied to its tridiagonal matrix (Saad 1992), evaluated at every
    epoch's flow time. Predictions apply the cross kernel block by block.
    """

    kernel_solver = "matrix_free"

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        n_classes = Y.shape[1]
        F0 = offset_outputs(params_star, X, settings.kernel_offset)
        residual = np.asarray(Y, dtype=np.float64) - F0
        scales = settings.layer_scales
        operator = TrainingKernel(params_star, X, n_classes, settings.ridge,
                                  max_bytes=settings.max_kernel_bytes, layer_scales=scales)
        solver = dict(tol=settings.kernel_tol, max_iter=settings.kernel_max_iter,
                      operator=operator, layer_scales=scales)
        if math.isinf(settings.n_epochs):
            A, info = solve_kernel_flow_matrix_free(params_star, X, residual, math.inf,
                                                    settings.ridge, n_classes, **solver)
            return MatrixFreeState(params_star, X, F0, None, A, F0 + info["train_update"],
                                   _summary(info, settings), settings.kernel_offset,
                                   settings.ridge, math.inf, scales)
        t_end = settings.learning_rate * settings.n_epochs
        flow = (None if t_end == 0 else
                krylov_kernel_flow(params_star, X, residual, t_end, settings.ridge,
                                   n_classes, **solver))
        info = _summary(flow.info if flow else {"method": "lanczos", "iterations": 0}, settings)
        return MatrixFreeState(params_star, X, F0, flow, np.zeros_like(F0), F0, info,
                               settings.kernel_offset, settings.ridge, layer_scales=scales)

    @staticmethod
    def step(state, epoch, settings):
        if state.flow is None:
            return state
        t = settings.learning_rate * epoch
        A, train_update, _ = state.flow.evaluate(t)
        return state._replace(coefficients=A, train_logits=state.F0 + train_update,
                              flow_time=t)

    @staticmethod
    def iterations(state):
        """Krylov iterations behind the epoch's outputs (the largest over outputs)."""
        return float(np.max(state.info.get("iterations", 0)))

    @staticmethod
    def solver_info(state):
        return state.info

    @staticmethod
    def outputs(state, X):
        if X is state.X:
            return state.train_logits
        F0_new = offset_outputs(state.params_star, X, state.offset)
        return F0_new + cross_kernel_apply(state.params_star, X, state.X, state.coefficients,
                                           state.F0.shape[1], layer_scales=state.layer_scales)

    @staticmethod
    def predict_outputs(params_star, params, fitted, X):
        """``offset(X) + K_bar(X, X_fit_) dual_coef_``, block by block."""
        dual_coef = fitted["dual_coef_"]
        F0_new = offset_outputs(params_star, X, fitted["kernel_offset_"])
        return F0_new + cross_kernel_apply(params_star, X, jnp.asarray(fitted["X_fit_"]),
                                           dual_coef, dual_coef.shape[1],
                                           layer_scales=fitted["layer_scales"])

    @staticmethod
    def training_inverse(params_star, fitted):
        """``(K_bar + rho I)^{-1}`` applied by conjugate gradients (:class:`CGInverse`),
        with the fit's operator, preconditioner, ``kernel_tol`` and ``kernel_max_iter``
        (from ``fitted``)."""
        X_fit = jnp.asarray(fitted["X_fit_"])
        operator = TrainingKernel(params_star, X_fit, fitted["dual_coef_"].shape[1],
                                  fitted["kernel_ridge_"],
                                  max_bytes=fitted["max_kernel_bytes_"],
                                  layer_scales=fitted["layer_scales"])
        return CGInverse(operator, nystrom_preconditioner(operator, PRECONDITIONER_RANK),
                         fitted["kernel_tol_"], fitted["kernel_max_iter_"])


PRECONDITIONER_RANK = 200
"""Rank of the Nystrom preconditioner of the matrix-free solves (that of
:func:`skntk._matrix_free.solve_kernel_flow_matrix_free`)."""


class DenseInverse(NamedTuple):
    """``(K_bar + rho I)^+`` of a dense training kernel, as a factor ``R`` with
    ``(K_bar + rho I)^+ = R^T R``: ``cholesky`` the lower Cholesky factor ``L``
    (``R = L^{-1}``), or ``root`` ``diag(lambda^{-1/2}) V^T`` from the eigendecomposition
    of :func:`skntk._kernel_flow.eigendecompose_kernel` (null directions zeroed: the
    pseudo-inverse of the fit). Exactly one of them is set (float64 N x N)."""

    cholesky: Any = None
    root: Any = None

    @classmethod
    def factor(cls, K_bar, ridge):
        """Cholesky for ``ridge > 0`` (the matrix is then positive definite); the
        eigendecomposition and pseudo-inverse for ``ridge = 0``, or when Cholesky fails
        on a kernel that rounding has made indefinite."""
        if ridge > 0:
            M = 0.5 * (K_bar + K_bar.T)
            M[np.diag_indices_from(M)] += ridge
            try:
                return cls(cholesky=scipy.linalg.cholesky(M, lower=True, overwrite_a=True,
                                                          check_finite=True))
            except np.linalg.LinAlgError:
                pass
            del M
        eigenvalues, V = eigendecompose_kernel(K_bar, ridge)
        positive = eigenvalues > 0
        scale = np.zeros_like(eigenvalues)
        scale[positive] = 1.0 / np.sqrt(eigenvalues[positive])
        V *= scale
        return cls(root=V.T)

    @property
    def nbytes(self):
        return (self.root if self.cholesky is None else self.cholesky).nbytes

    description = "the factored training kernel (float64)"
    cross_copies = CROSS_KERNEL_COPIES + 2
    """A cross kernel's peak in float32 kernels: :data:`CROSS_KERNEL_COPIES` and the
    float64 ``R K_cross^T``."""

    def quadratic(self, K_cross):
        """``diag(K_cross (K_bar + rho I)^+ K_cross^T)`` for ``K_cross`` (b, N): (b,)."""
        if self.cholesky is not None:
            Z = scipy.linalg.solve_triangular(self.cholesky, K_cross.T, lower=True,
                                              check_finite=False)
        else:
            Z = self.root @ K_cross.T
        return np.einsum("ij,ij->j", Z, Z)


class CGInverse(NamedTuple):
    """``(K_bar + rho I)^{-1}`` applied by preconditioned conjugate gradients on all
    columns of a block at once, one kernel-block product per iteration."""

    operator: Any
    preconditioner: Any
    tol: float
    max_iter: int

    @property
    def nbytes(self):
        stored = self.operator.factor_bytes if self.operator.stores_factors else 0
        return stored + self.preconditioner.U.nbytes

    description = "the matrix-free operator's layer factors and preconditioner"
    cross_copies = CROSS_KERNEL_COPIES + 14
    """A cross kernel's peak in float32 kernels: :data:`CROSS_KERNEL_COPIES` and seven
    float64 arrays of its size in the solve (right-hand sides, iterate, residual,
    preconditioned residual, direction, product, true-residual product)."""

    def quadratic(self, K_cross):
        """``diag(K_cross (K_bar + rho I)^{-1} K_cross^T)`` for ``K_cross`` (b, N): (b,).

        CG from zero keeps ``k^T z_j <= k^T M^{-1} k`` at every iterate in exact
        arithmetic (the gap is the squared ``M``-norm of the error; restarts from the
        true residual may break it by rounding), so a truncated solve errs towards a
        larger variance. Warns (``ConvergenceWarning``) when it stops short of ``tol``.
        """
        B = np.ascontiguousarray(K_cross.T)
        Z, _, info = _conjugate_gradients(self.operator, B, self.tol, self.max_iter,
                                          self.preconditioner)
        if not info["converged"]:
            warnings.warn(
                f"predict_variance: conjugate gradients did not reach the fitted "
                f"kernel_tol={self.tol} within kernel_max_iter={self.max_iter} iterations "
                f"(largest relative residual {np.max(info['residual_norm']):.2g}); the "
                f"variance may be overestimated. Refit with a larger `kernel_max_iter` or "
                f"`kernel_ridge`.", ConvergenceWarning)
        return np.einsum("ij,ij->j", B, Z)


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
