"""Solvers of the ``"kernel"`` NTK phase, in the registry :data:`KERNEL_SOLVERS`.

Each solver computes, for the traced kernel ``K_bar = K / C`` at ``theta*``, the ridge
``rho`` and the residual ``R = Y - F0`` on the training inputs ``X`` (Lee et al.,
NeurIPS 2019, eq. (9)-(10); the "Method" page, "NTK phases")::

    A(t)     = g(K_bar + rho I) R,    g(lambda) = (1 - exp(-t lambda / N)) / lambda
    f_t(X)   = F0 + K_bar A(t)

(``g(lambda) = 1 / lambda`` at ``t = inf``). All share one interface, which is all the
phase (:class:`skntk._kernel_phase.KernelPhase`) uses:

``Solver.build(params_star, X, residual, settings, X_val=None)``
    The solver's state for one fit (:class:`skntk._phase_api.PhaseSettings` gives
    ``ridge``, the flow times, the budget and the tolerances).
``solver.evaluate(t)``
    ``(A, K_bar A, info)`` at flow time ``t``: the dual coefficients (N, C) float64,
    the update of the training outputs (N, C) float64 and the solver's record (a dict,
    or ``None``).
``solver.validation_outputs(A, F0_val)``
    ``F0_val + K_bar(X_val, X) A`` on the validation rows given to :meth:`build`.
``Solver.training_inverse(params_star, fitted)``
    ``(K_bar + rho I)^+`` of a fitted model, for ``predict_variance``.

- ``"dense"`` (:class:`DenseSolver`): one symmetric eigendecomposition of the
  ``N x N`` kernel serves every flow time (:mod:`skntk._kernel_flow`); the validation
  cross kernel is formed once.
- ``"matrix_free"`` (:class:`MatrixFreeSolver`): no ``N x N`` matrix; conjugate
  gradients at ``t = inf`` and one Lanczos decomposition for finite ``t``, through
  kernel-block products (:mod:`skntk._matrix_free`); the validation cross kernel is
  applied block by block at every epoch.
"""

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from ._kernel_budget import (CROSS_KERNEL_COPIES, EIGENVECTORS, TRAINING_KERNEL,
                             TRAINING_KERNEL_COPIES, VALIDATION_KERNEL,
                             VARIANCE_TRAINING_KERNEL, kernel_bar)
from ._kernel_flow import (amplifies_round_off, drop_unresolved, eigendecompose_kernel,
                           flow_coefficients, flow_outputs, flow_train_outputs,
                           project_residual, resolution_rtol)
from ._matrix_free import (TrainingKernel, _conjugate_gradients, cross_kernel_apply,
                           krylov_kernel_flow, nystrom_preconditioner,
                           solve_kernel_flow_matrix_free)

PRECONDITIONER_RANK = 200
"""Rank of the Nystrom preconditioner of the matrix-free solves (that of
:func:`skntk._matrix_free.solve_kernel_flow_matrix_free`)."""


class DenseSolver(NamedTuple):
    """The eigendecomposition ``K_bar + rho I = V diag(lambda) V^T`` of the training
    kernel (float64; null directions zeroed, :func:`skntk._kernel_flow.eigendecompose_kernel`).

    Fields: ``eigenvalues`` (N,), ``eigenvectors`` (N, N), ``projection`` (N, C)
    ``V^T R``, ``ridge`` ``rho``, ``val_kernel`` (n_val, N) ``K_bar(X_val, X)`` or
    ``None`` without validation rows.
    """

    eigenvalues: Any
    eigenvectors: Any
    projection: Any
    ridge: float
    val_kernel: Any = None

    @classmethod
    def build(cls, params_star, X, residual, settings, X_val=None, row_scale=None):
        """Form the training kernel and decompose it, then form the validation cross
        kernel (each after its memory check, :mod:`skntk._kernel_budget`). With
        ``row_scale`` ``s`` (N,), the kernel decomposed is ``diag(s) K_bar diag(s)``
        (weighted kernel regression; :class:`skntk._kernel_phase.KernelPhase`) and the
        validation kernel is left unscaled.

        Parameters
        ----------
        params_star : list of (W, b)
            ``theta*`` (jax arrays).
        X : jax.Array of shape (N, d)
            Training inputs.
        residual : ndarray of shape (N, C), float64
            ``Y - F0``.
        settings : PhaseSettings
        X_val : jax.Array of shape (n_val, d) or None, default=None

        Raises
        ------
        ValueError
            If a kernel exceeds ``settings.max_kernel_bytes``, or the training kernel or
            the residual is not finite (a network that diverged).
        """
        n_classes = residual.shape[1]
        K_bar = kernel_bar(params_star, X, X, n_classes, settings.max_kernel_bytes,
                           TRAINING_KERNEL, copies=TRAINING_KERNEL_COPIES, mesh=settings.mesh,
                           layer_scales=settings.layer_scales)
        _scale_rows_and_columns(K_bar, row_scale)
        # Exact zeros first (float64 rule); then, if the last flow time would amplify
        # the kernel's float32 round-off, everything below its resolution.
        eigenvalues, eigenvectors = eigendecompose_kernel(K_bar, settings.ridge)
        n_samples = eigenvalues.size
        rtol = resolution_rtol(n_samples, kernel_dtype(params_star))
        t_end = (math.inf if math.isinf(settings.n_epochs)
                 else settings.learning_rate * settings.n_epochs)
        if n_samples and amplifies_round_off(t_end, n_samples, rtol * eigenvalues[-1]):
            eigenvalues = drop_unresolved(eigenvalues, rtol)
        del K_bar  # not held beside the validation cross kernel
        projection = project_residual(eigenvectors, residual)
        _warn_if_unresolved(eigenvalues, projection)
        val_kernel = None
        if X_val is not None:
            val_kernel = kernel_bar(params_star, X_val, X, n_classes,
                                    settings.max_kernel_bytes, VALIDATION_KERNEL,
                                    held_bytes=eigenvectors.nbytes, held_what=EIGENVECTORS,
                                    layer_scales=settings.layer_scales)
        return cls(eigenvalues, eigenvectors, projection, settings.ridge, val_kernel)

    def evaluate(self, t):
        """``(V g(lambda) V^T R, V diag((lambda - rho) g(lambda)) V^T R, None)`` at flow
        time ``t`` (:func:`skntk._kernel_flow.flow_coefficients` and
        :func:`skntk._kernel_flow.flow_train_outputs`)."""
        n_samples = self.eigenvectors.shape[0]
        args = (self.eigenvalues, self.eigenvectors, self.projection)
        coefficients = flow_coefficients(*args, t, n_samples, projected=True)
        train_update = flow_train_outputs(*args, np.zeros_like(self.projection), t,
                                          n_samples, self.ridge, projected=True)
        return coefficients, train_update, None

    def validation_outputs(self, coefficients, F0_val):
        """``F0_val + K_bar(X_val, X) A`` from the kept cross kernel, (n_val, C)
        float64; a ``ValueError`` if that kernel is not finite."""
        return flow_outputs(self.val_kernel, coefficients, F0_val)

    @staticmethod
    def training_inverse(params_star, fitted):
        """``(K_bar + rho I)^+`` of the fitted training kernel, factored once
        (:class:`DenseInverse`), within the fitted ``max_kernel_bytes_``."""
        X_fit = jnp.asarray(fitted["X_fit_"])
        K_bar = kernel_bar(params_star, X_fit, X_fit, fitted["dual_coef_"].shape[1],
                           fitted["max_kernel_bytes_"], VARIANCE_TRAINING_KERNEL,
                           copies=TRAINING_KERNEL_COPIES, layer_scales=fitted["layer_scales"])
        _scale_rows_and_columns(K_bar, _fitted_row_scale(fitted))
        return DenseInverse.factor(K_bar, fitted["kernel_ridge_"], kernel_dtype(params_star))


class MatrixFreeSolver(NamedTuple):
    """Kernel-block products only: memory ``O(N (d + sum of widths))``.

    At ``t = inf``, conjugate gradients on ``(K_bar + rho I) A = R`` with a Nystrom
    preconditioner (Hestenes and Stiefel 1952; Frangella, Tropp and Udell 2023),
    solved when built; at finite ``t``, one Lanczos decomposition of
    ``K_bar + rho I`` per output column, ``g`` applied to its tridiagonal matrix
    (Saad 1992), built for the last flow time and evaluated at every epoch's.

    Fields: ``params_star``, ``X`` (jax), ``n_classes``, ``layer_scales``; ``flow``:
    the :class:`skntk._matrix_free.KrylovFlow` (``None`` at ``t = inf`` or when the last
    flow time is 0); ``solution``: ``(A, K_bar A)`` at ``t = inf`` (else ``None``);
    ``info``: the solver's record (``method``, ``iterations``, ``residual_norm``,
    ``converged``, ``tol``); ``X_val``: validation inputs or ``None``.
    """

    params_star: Any
    X: Any
    n_classes: int
    layer_scales: Any
    flow: Any
    solution: Any
    info: dict
    X_val: Any = None

    @classmethod
    def build(cls, params_star, X, residual, settings, X_val=None, row_scale=None):
        """Solve at ``t = inf`` (``settings.n_epochs`` infinite), or build the Lanczos
        decomposition for the last flow time ``settings.learning_rate *
        settings.n_epochs``; warns (``ConvergenceWarning``) when the solver stops short
        of ``settings.kernel_tol``.

        Parameters are those of :meth:`DenseSolver.build`. Raises a ``ValueError`` if a
        kernel-block product is not finite (:class:`skntk._matrix_free.TrainingKernel`).
        """
        n_classes = residual.shape[1]
        scales = settings.layer_scales
        operator = TrainingKernel(params_star, X, n_classes, settings.ridge,
                                  max_bytes=settings.max_kernel_bytes, layer_scales=scales,
                                  row_scale=row_scale)
        options = dict(tol=settings.kernel_tol, max_iter=settings.kernel_max_iter,
                       operator=operator, layer_scales=scales)
        fields = dict(params_star=params_star, X=X, n_classes=n_classes, layer_scales=scales,
                      X_val=X_val)
        if math.isinf(settings.n_epochs):
            A, info = solve_kernel_flow_matrix_free(params_star, X, residual, math.inf,
                                                    settings.ridge, n_classes, **options)
            return cls(flow=None, solution=(A, info["train_update"]),
                       info=_summary(info, settings), **fields)
        t_end = settings.learning_rate * settings.n_epochs
        flow = (None if t_end == 0 else
                krylov_kernel_flow(params_star, X, residual, t_end, settings.ridge,
                                   n_classes, **options))
        info = flow.info if flow else {"method": "lanczos", "iterations": 0}
        return cls(flow=flow, solution=None, info=_summary(info, settings), **fields)

    def evaluate(self, t):
        """``(A, K_bar A, info)`` at flow time ``t``: the conjugate-gradient solution at
        ``t = inf``, the Lanczos approximation at finite ``t`` (zeros at ``t = 0``).

        Raises
        ------
        ValueError
            For a finite ``t`` when built for ``t = inf``, or the reverse.
        """
        if math.isinf(t) != (self.solution is not None):
            built = "t = inf" if self.solution is not None else "finite flow times"
            raise ValueError(f"This matrix-free solver was built for {built}; got t = {t}.")
        if self.solution is not None:
            A, train_update = self.solution
        elif self.flow is None or t == 0:
            A = np.zeros((self.X.shape[0], self.n_classes))
            train_update = np.zeros_like(A)
        else:
            A, train_update, _ = self.flow.evaluate(t)
        return A, train_update, self.info

    def validation_outputs(self, coefficients, F0_val):
        """``F0_val + K_bar(X_val, X) A``, block by block
        (:func:`skntk._matrix_free.cross_kernel_apply`), (n_val, C) float64."""
        return F0_val + cross_kernel_apply(self.params_star, self.X_val, self.X, coefficients,
                                           self.n_classes, layer_scales=self.layer_scales)

    @staticmethod
    def training_inverse(params_star, fitted):
        """``(K_bar + rho I)^{-1}`` applied by conjugate gradients (:class:`CGInverse`),
        with the fit's operator, preconditioner, ``kernel_tol_`` and ``kernel_max_iter_``."""
        X_fit = jnp.asarray(fitted["X_fit_"])
        operator = TrainingKernel(params_star, X_fit, fitted["dual_coef_"].shape[1],
                                  fitted["kernel_ridge_"],
                                  max_bytes=fitted["max_kernel_bytes_"],
                                  layer_scales=fitted["layer_scales"],
                                  row_scale=_fitted_row_scale(fitted))
        return CGInverse(operator, nystrom_preconditioner(operator, PRECONDITIONER_RANK),
                         fitted["kernel_tol_"], fitted["kernel_max_iter_"])


def _scale_rows_and_columns(K, row_scale):
    """``K <- diag(s) K diag(s)`` in place (nothing for ``s = None``)."""
    if row_scale is not None:
        K *= row_scale[:, None]
        K *= row_scale[None, :]


def _fitted_row_scale(fitted):
    """``sqrt`` of the fitted kernel phase's sample weights, or ``None`` (weights 1)."""
    weights = fitted.get("kernel_sample_weight_")
    return None if weights is None else np.sqrt(weights)


KERNEL_SOLVERS = {"dense": DenseSolver, "matrix_free": MatrixFreeSolver}
"""The solvers of the kernel phase, keyed by the value of ``kernel_solver_``."""


def kernel_solver(name):
    """The solver class of ``name`` (a key of :data:`KERNEL_SOLVERS`).

    Raises
    ------
    ValueError
        If ``name`` is not one of them.
    """
    try:
        return KERNEL_SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown kernel solver {name!r}; expected one of "
                         f"{sorted(KERNEL_SOLVERS)}.") from None


class DenseInverse(NamedTuple):
    """``(K_bar + rho I)^+`` of a dense training kernel, as a factor ``R`` with
    ``(K_bar + rho I)^+ = R^T R``: ``cholesky`` the lower Cholesky factor ``L``
    (``R = L^{-1}``), or ``root`` ``diag(lambda^{-1/2}) V^T`` from the eigendecomposition
    of :func:`skntk._kernel_flow.eigendecompose_kernel` (null directions zeroed: the
    pseudo-inverse of the fit). Exactly one of them is set (float64 N x N)."""

    cholesky: Any = None
    root: Any = None

    @classmethod
    def factor(cls, K_bar, ridge, precision=None):
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
        eigenvalues, V = eigendecompose_kernel(K_bar, ridge, precision=precision)
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


UNRESOLVED_SHARE = 0.5
"""Share of the residual's squared norm in directions that the training kernel does not
resolve above which the dense solver warns."""


def _warn_if_unresolved(eigenvalues, projection):
    """Warn when most of the residual ``R = Y - F0`` lies along eigenvectors whose
    eigenvalues are round-off (zeroed by :func:`skntk._kernel_flow.eigendecompose_kernel`):
    no flow time fits that part, and resolving it would take precision the kernel
    does not have."""
    total = float(np.sum(projection**2))
    unresolved = float(np.sum(projection[eigenvalues == 0] ** 2))
    if total > 0 and unresolved > UNRESOLVED_SHARE * total:
        warnings.warn(
            f"{unresolved / total:.0%} of the kernel phase's residual Y - F0 lies along "
            f"directions of the training kernel below its float32 resolution "
            f"({int(np.sum(eigenvalues == 0))} of {eigenvalues.size} eigenvalues), which "
            f"no kernel regression can fit; the model leaves that part of the targets "
            f"unfitted. Duplicate rows with different targets, or features on very "
            f"different scales, cause this: standardise the inputs, or use "
            f"ntk_phase='linearized'.", UserWarning)


def kernel_dtype(params_star):
    """The dtype the kernels of ``params_star`` are computed in (float32 unless x64)."""
    return np.dtype(jnp.result_type(*jax.tree.leaves(params_star)))


def _summary(info, settings):
    """The solver's record without its large arrays; warns when it did not converge."""
    keep = ("method", "iterations", "residual_norm", "converged", "restarts")
    summary = {k: info[k] for k in keep if k in info}
    summary["tol"] = settings.kernel_tol
    if not np.all(summary.get("converged", True)):
        iterations = int(np.max(summary.get("iterations", 0)))
        reached = np.max(summary.get("residual_norm", np.nan))
        if iterations < settings.kernel_max_iter:
            why = (f"stopped after {iterations} iterations at a relative residual of "
                   f"{reached:.2g}, where the float32 kernel product's round-off stops "
                   f"it improving")
            fix = ("Use `kernel_tol` >= that (about 1e-5 with float32 kernels), add "
                   "`kernel_ridge`, or use kernel_solver='dense'.")
        else:
            why = (f"reached a relative residual of {reached:.2g} within "
                   f"kernel_max_iter={settings.kernel_max_iter} iterations")
            fix = "Raise `kernel_max_iter` or `kernel_tol`, or add `kernel_ridge`."
        warnings.warn(
            f"The matrix-free kernel solver ({summary.get('method')}) did not reach "
            f"kernel_tol={settings.kernel_tol}: it {why}. {fix}", ConvergenceWarning)
    return summary
