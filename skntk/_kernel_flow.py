"""Closed-form gradient flow of a linearised network under the squared error.

With the neural tangent kernel frozen at the expansion point and approximated as
``K_bar ⊗ I_C`` (``K_bar = K / C``, the traced kernel over the number of outputs),
gradient flow on the mean squared error ``(1/2N) Σ ||f(x_i) - y_i||²`` has the
closed-form solution (Jacot et al., NeurIPS 2018; Lee et al., NeurIPS 2019,
"Wide neural networks of any depth evolve as linear models under gradient descent",
the MSE gradient-flow solution)::

    f_t(X) = Y + exp(-t K_bar / N) (F0 - Y)
    f_t(x) = f_0(x) + K_bar(x, X) g(K_bar) (Y - F0)
    g(K_bar) = K_bar⁻¹ (I - exp(-t K_bar / N))

where ``F0 = f_0(X)`` and ``t`` is the flow time (learning rate times number of
epochs). With a ridge ``ρ`` the kernel is replaced by ``K_bar + ρI`` inside ``g``.
Everything is computed from one symmetric eigendecomposition
``K_bar + ρI = V diag(λ) Vᵀ``; ``g`` acts on eigenvalue ``λ`` as
``(1 - exp(-tλ/N)) / λ``, which is evaluated with ``expm1`` and therefore stays
accurate for small ``tλ/N`` where a matrix exponential of a near-singular kernel
does not.

Typical use, one decomposition for every flow time::

    lam, V = eigendecompose_kernel(K_bar, ridge)
    proj = project_residual(V, Y - F0)
    for t in times:
        A = flow_coefficients(lam, V, proj, t, N, projected=True)
        train = flow_train_outputs(lam, V, proj, F0, t, N, ridge, projected=True)
        test = flow_outputs(K_cross, A, F0_new)

All results are float64 numpy arrays.
"""

import math

import numpy as np
import scipy.linalg

_NONFINITE_HINT = (
    "This usually means the network diverged before the kernel phase; "
    "try a smaller learning rate."
)


def _as_float64_matrix(array, name):
    array = np.asarray(array)
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, got dtype {array.dtype}.")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {array.shape}.")
    return array.astype(np.float64, copy=False)


def _check_finite(array, name):
    if not np.all(np.isfinite(array)):
        n_bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s). {_NONFINITE_HINT}"
        )


def _check_flow_time(t):
    if np.ndim(t) != 0 or np.iscomplexobj(t):
        raise ValueError(f"The flow time t must be a real scalar, got {t!r}.")
    t = float(t)
    if np.isnan(t) or t < 0:
        raise ValueError(f"The flow time t must be >= 0 (numpy.inf allowed), got {t}.")
    return t


def _check_ridge(ridge):
    ridge = float(ridge)
    if not np.isfinite(ridge) or ridge < 0:
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge}.")
    return ridge


def _rows_match(array, n_rows, name, expected):
    if array.shape[0] != n_rows:
        raise ValueError(
            f"{name} has {array.shape[0]} rows but {expected} has {n_rows}."
        )


def resolution_rtol(n_samples, precision):
    """Relative size below which an eigenvalue of an ``n_samples``-square kernel whose
    entries were computed in ``precision`` is round-off: ``max(n, 1) · eps``, the
    rule of ``scipy.linalg.pinvh`` with the machine epsilon of ``precision``.

    An entry computed in float32 is off by about ``eps · |K_ij|``, so the computed
    kernel is the true one plus a perturbation of spectral norm up to about
    ``n · eps · λ_max``; eigenvalues below that are not resolved (Weyl's inequality).
    """
    return max(int(n_samples), 1) * float(np.finfo(precision).eps)


def eigendecompose_kernel(K_bar, ridge=0.0, *, rtol=None, precision=None):
    """Symmetric eigendecomposition of ``K_bar + ridge * I`` with null directions zeroed.

    Parameters
    ----------
    K_bar : array-like of shape (n_samples, n_samples)
        Training kernel ``K / C`` at the expansion point: symmetric positive
        semi-definite up to round-off. Any real floating dtype (float32 is common);
        it is converted to float64 and symmetrised as ``(K_bar + K_barᵀ) / 2``.
    ridge : float, default=0.0
        ``ρ >= 0`` added to the diagonal.
    rtol : float, optional
        Relative tolerance below which an eigenvalue is treated as zero. Default
        :func:`resolution_rtol`, ``max(n_samples, 1) * eps``, with ``eps`` the
        machine epsilon of ``precision`` — the rule of ``scipy.linalg.pinvh``:
        eigenvalues below ``rtol * λ_max`` are not resolved by a kernel computed at
        that precision.
    precision : numpy floating dtype, optional
        The dtype the kernel's entries were computed in (float32 for the kernels of
        skntk, even when handed over as float64); default the dtype of ``K_bar``
        (float64 for non-float input).

    Returns
    -------
    eigenvalues : ndarray of shape (n_samples,), float64
        Eigenvalues of ``K_bar + ρI`` in ascending order, each ``>= 0``. Negative
        eigenvalues (round-off in a PSD matrix) are clipped to 0 and those below
        ``rtol * λ_max`` are set to exactly 0.
    eigenvectors : ndarray of shape (n_samples, n_samples), float64
        Orthonormal eigenvectors ``V`` as columns, so that
        ``K_bar + ρI ≈ V diag(eigenvalues) Vᵀ``.

    Raises
    ------
    ValueError
        If ``K_bar`` is not a square 2-D real matrix, contains NaN or infinity
        (typically a network that diverged: use a smaller learning rate), or if
        ``ridge`` is negative or not finite.

    Notes
    -----
    Zeroing null directions is exact, not an approximation. ``K_bar`` is a Gram
    matrix ``Φ Φᵀ`` (``Φ`` stacks the Jacobians of the training samples), and
    the cross kernel is ``K_bar(x, X) = φ(x) Φᵀ``. If ``K_bar v = 0`` then
    ``||Φᵀ v||² = vᵀ K_bar v = 0``, so ``K_bar(x, X) v = 0`` for every ``x``:
    the component of the residual along ``v`` never reaches any output, at any
    flow time. The flow filter is therefore set to 0 on these directions
    (pseudo-inverse semantics) instead of its limit ``t / N``; this keeps large
    finite ``t`` and ``t = inf`` finite and in agreement when ``ρ = 0`` and the
    kernel is singular (e.g. duplicate training rows). On the training outputs
    the same directions keep their initial residual, exactly as
    ``exp(-t K_bar / N)`` does for a zero eigenvalue.
    """
    K = np.asarray(K_bar)
    if precision is None:
        precision = K.dtype if np.issubdtype(K.dtype, np.floating) else np.float64
    K = _as_float64_matrix(K, "K_bar")
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"K_bar must be square, got shape {K.shape}.")
    _check_finite(K, "The kernel matrix K_bar")
    ridge = _check_ridge(ridge)

    n_samples = K.shape[0]
    K = 0.5 * (K + K.T)
    if ridge:
        K[np.diag_indices_from(K)] += ridge
    eigenvalues, eigenvectors = scipy.linalg.eigh(K)

    if rtol is None:
        rtol = resolution_rtol(n_samples, precision)
    return drop_unresolved(eigenvalues, rtol), eigenvectors


def amplifies_round_off(t, n_samples, resolution):
    """Whether the flow at time ``t`` can amplify an eigenvalue error of size
    ``resolution`` (``rtol · λ_max``) beyond itself: ``g(λ) <= min(t/N, 1/λ)``, so an
    error ``δ`` of the kernel along a direction moves the outputs by at most
    ``δ · t/N`` times its residual. True at ``t = inf`` or when ``δ · t/N >= 1``; only
    then must directions below the resolution be dropped."""
    return math.isinf(t) or resolution * t / max(int(n_samples), 1) >= 1.0


def drop_unresolved(eigenvalues, rtol):
    """``eigenvalues`` clipped at 0, with those ``<= rtol · max`` set to exactly 0
    (a copy, float64): the null directions of :func:`eigendecompose_kernel`, also
    applied to the Ritz values of the matrix-free solver."""
    lam = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    if lam.size:
        lam[lam <= rtol * lam.max()] = 0.0
    return lam


def flow_filter(eigenvalues, t, n_samples):
    """Spectral filter ``g(λ) = (1 - exp(-tλ/N)) / λ`` of the gradient flow.

    Parameters
    ----------
    eigenvalues : array-like of shape (n_eigenvalues,)
        Non-negative eigenvalues of ``K_bar + ρI``, as returned by
        :func:`eigendecompose_kernel`; exact zeros mark null directions.
    t : float
        Flow time ``η · n >= 0``; ``numpy.inf`` gives the kernel-regression
        limit ``1/λ``.
    n_samples : int
        Number of training samples ``N`` (the ``1/N`` of the mean squared error).

    Returns
    -------
    g : ndarray of shape (n_eigenvalues,), float64
        ``-expm1(-tλ/N) / λ`` (accurate when ``tλ/N`` is small), ``1/λ`` at
        ``t = inf`` and 0 wherever ``λ == 0`` (see the notes of
        :func:`eigendecompose_kernel` for why that is exact). ``t = 0`` gives zeros.

    Raises
    ------
    ValueError
        If ``t`` is negative or NaN, ``n_samples < 1``, or an eigenvalue is
        negative or not finite.
    """
    t = _check_flow_time(t)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(
            "eigenvalues must be finite and >= 0; use eigendecompose_kernel, "
            "which clips round-off negatives."
        )
    g = np.zeros_like(lam)
    nonzero = lam > 0
    lam_nz = lam[nonzero]
    if np.isinf(t):
        g[nonzero] = 1.0 / lam_nz
    elif t > 0:
        g[nonzero] = -np.expm1(-(t / n_samples) * lam_nz) / lam_nz
    return g


def project_residual(eigenvectors, residual):
    """Residual in the eigenbasis, ``Vᵀ (Y - F0)``; compute once, reuse for every ``t``.

    Parameters
    ----------
    eigenvectors : array-like of shape (n_samples, n_samples)
        ``V`` from :func:`eigendecompose_kernel`.
    residual : array-like of shape (n_samples, n_outputs)
        ``Y - F0``: one-hot targets minus network outputs at the expansion point.

    Returns
    -------
    projection : ndarray of shape (n_samples, n_outputs), float64

    Raises
    ------
    ValueError
        If the shapes do not match or the residual is not finite.
    """
    V = _as_float64_matrix(eigenvectors, "eigenvectors")
    R = _as_float64_matrix(residual, "residual")
    _rows_match(R, V.shape[0], "residual", "eigenvectors")
    _check_finite(R, "The residual Y - F0")
    return V.T @ R


def _projection(eigenvectors, residual, projected):
    if projected:
        P = _as_float64_matrix(residual, "residual projection")
        _rows_match(P, eigenvectors.shape[1], "residual projection", "eigenvectors")
        return P
    return project_residual(eigenvectors, residual)


def flow_coefficients(eigenvalues, eigenvectors, residual, t, n_samples, *,
                      projected=False):
    """Dual coefficients ``A = g(K_bar + ρI) (Y - F0)`` at flow time ``t``.

    Outputs on any input ``x`` are then ``f_0(x) + K_bar(x, X) A``
    (see :func:`flow_outputs`).

    Parameters
    ----------
    eigenvalues : array-like of shape (n_samples,)
        From :func:`eigendecompose_kernel`.
    eigenvectors : array-like of shape (n_samples, n_samples)
        From :func:`eigendecompose_kernel`.
    residual : array-like of shape (n_samples, n_outputs)
        ``Y - F0``, or, with ``projected=True``, its projection
        ``Vᵀ (Y - F0)`` from :func:`project_residual` — which saves one
        ``O(N² C)`` product per call when many flow times are evaluated.
    t : float
        Flow time ``η · n >= 0``, possibly ``numpy.inf`` (kernel regression:
        ``A = (K_bar + ρI)⁻¹ (Y - F0)``, a pseudo-inverse on null directions).
    n_samples : int
        ``N``, the number of training samples.
    projected : bool, default=False
        Whether ``residual`` is already ``Vᵀ (Y - F0)``.

    Returns
    -------
    coefficients : ndarray of shape (n_samples, n_outputs), float64
        ``V diag(g(λ)) Vᵀ (Y - F0)``, with ``g`` from :func:`flow_filter`.
    """
    V = _as_float64_matrix(eigenvectors, "eigenvectors")
    P = _projection(V, residual, projected)
    g = flow_filter(eigenvalues, t, n_samples)
    return V @ (g[:, None] * P)


def flow_train_outputs(eigenvalues, eigenvectors, residual, F0, t, n_samples,
                       ridge=0.0, *, projected=False):
    """Network outputs on the training set after flow time ``t``.

    Computes ``F0 + K_bar A`` in the eigenbasis, using
    ``K_bar = V diag(λ - ρ) Vᵀ``::

        f_t(X) = F0 + V diag((λ - ρ) g(λ)) Vᵀ (Y - F0).

    With ``ρ = 0`` this is ``Y + exp(-t K_bar / N) (F0 - Y)``: ``λ g(λ)`` is
    ``1 - exp(-tλ/N)`` and null directions keep their initial residual, as
    the matrix exponential does.

    Parameters
    ----------
    eigenvalues : array-like of shape (n_samples,)
        From :func:`eigendecompose_kernel` (eigenvalues of ``K_bar + ρI``).
    eigenvectors : array-like of shape (n_samples, n_samples)
        From :func:`eigendecompose_kernel`.
    residual : array-like of shape (n_samples, n_outputs)
        ``Y - F0``, or ``Vᵀ (Y - F0)`` with ``projected=True``.
    F0 : array-like of shape (n_samples, n_outputs)
        Network outputs on the training set at the expansion point.
    t : float
        Flow time ``>= 0``, possibly ``numpy.inf``. ``t = 0`` returns ``F0``.
    n_samples : int
        ``N``, the number of training samples.
    ridge : float, default=0.0
        The ``ρ`` used in :func:`eigendecompose_kernel`.
    projected : bool, default=False
        Whether ``residual`` is already ``Vᵀ (Y - F0)``.

    Returns
    -------
    outputs : ndarray of shape (n_samples, n_outputs), float64
    """
    V = _as_float64_matrix(eigenvectors, "eigenvectors")
    P = _projection(V, residual, projected)
    F0 = _as_float64_matrix(F0, "F0")
    if F0.shape != (V.shape[0], P.shape[1]):
        raise ValueError(
            f"F0 must have shape {(V.shape[0], P.shape[1])}, got {F0.shape}."
        )
    ridge = _check_ridge(ridge)
    lam = np.asarray(eigenvalues, dtype=np.float64)
    g = flow_filter(lam, t, n_samples)
    # Round-off can leave an eigenvalue of K_bar + ρI just below ρ.
    kernel_eigenvalues = np.clip(lam - ridge, 0.0, None)
    return F0 + V @ ((kernel_eigenvalues * g)[:, None] * P)


def flow_outputs(K_cross, coefficients, F0_new):
    """Network outputs on new inputs: ``f_t(x) = f_0(x) + K_bar(x, X) A``.

    Parameters
    ----------
    K_cross : array-like of shape (n_new, n_samples)
        Cross kernel ``K_bar(x, X)`` (traced kernel over ``C``) between the new
        inputs and the training set, at the expansion point; any real dtype.
    coefficients : array-like of shape (n_samples, n_outputs)
        From :func:`flow_coefficients`.
    F0_new : array-like of shape (n_new, n_outputs)
        Network outputs on the new inputs at the expansion point.

    Returns
    -------
    outputs : ndarray of shape (n_new, n_outputs), float64

    Raises
    ------
    ValueError
        If the shapes do not match or ``K_cross`` is not finite.
    """
    K = _as_float64_matrix(K_cross, "K_cross")
    A = _as_float64_matrix(coefficients, "coefficients")
    F0_new = _as_float64_matrix(F0_new, "F0_new")
    if K.shape[1] != A.shape[0]:
        raise ValueError(
            f"K_cross has {K.shape[1]} columns but coefficients has {A.shape[0]} rows."
        )
    if F0_new.shape != (K.shape[0], A.shape[1]):
        raise ValueError(
            f"F0_new must have shape {(K.shape[0], A.shape[1])}, got {F0_new.shape}."
        )
    _check_finite(K, "The cross kernel K_cross")
    return F0_new + K @ A
