"""Matrix-free solver of the ``"kernel"`` NTK phase, for training sets whose kernel does
not fit in memory (MNIST: a 60000 x 60000 kernel is 13 GiB in float32).

The closed-form phase (:mod:`skntk._kernel_flow`; the "Method" page, "NTK phases") needs, with
``K_bar = K / C`` the traced empirical NTK at ``θ*`` over the number of outputs ``C``,
``ρ`` the ridge and ``R = Y - F0`` the residual at the expansion point (Lee et al.,
NeurIPS 2019, "Wide neural networks of any depth evolve as linear models under
gradient descent", the MSE gradient-flow solution)::

    A        = g(K_bar + ρI) R,     g(λ) = (1 - exp(-tλ/N)) / λ   (1/λ at t = inf)
    f_t(X)   = F0 + K_bar A         (= Y + exp(-t K_bar / N)(F0 - Y) when ρ = 0)
    f_t(x)   = f_0(x) + K_bar(x, X) A.

Here nothing of size ``N x N`` is formed. Everything rests on one product,
``K V`` for a block ``V`` of ``k`` columns (:func:`fast_ntk_vector_product`):

- ``t = inf``: conjugate gradients (Hestenes and Stiefel, J. Res. NBS 49, 1952) on
  ``(K_bar + ρI) A = R``, all ``C`` right-hand sides at once, one kernel product per
  iteration (:func:`solve_kernel_flow_matrix_free`), preconditioned by a randomized
  Nyström approximation of the top of the spectrum (Frangella, Tropp and Udell,
  SIAM J. Matrix Anal. Appl. 44, 2023; :func:`nystrom_preconditioner`);
- finite ``t``: ``A = g(K_bar + ρI) R`` by the Lanczos approximation of a matrix
  function, ``g(M) r ≈ ‖r‖ V_m g(T_m) e_1`` with full reorthogonalisation
  (Saad, SIAM J. Numer. Anal. 29, 1992, "Analysis of some Krylov subspace
  approximations to the matrix exponential operator"; Golub and Van Loan, "Matrix
  computations", 4th ed., §10.1), ``g`` applied to the small tridiagonal ``T_m``
  through its eigendecomposition (:func:`krylov_kernel_flow`, whose one Krylov basis
  serves every flow time, as the one eigendecomposition of the dense phase does);
- predictions: ``K_bar(x, X) A`` block by block (:func:`cross_kernel_apply`).

The kernel-block product
------------------------
The traced NTK of the MLP is a sum over layers of Hadamard products of two
low-rank Gram matrices (see :mod:`skntk.ntk`)::

    K = Σ_l (H_l H_lᵀ) ∘ (S_l S_lᵀ),

with ``H_l = [h_{l-1}, 1]`` the layer input and a column of ones (the bias) (in the
NTK parameterisation ``[√s_W,l · h_{l-1}, √s_b,l]``, which makes the kernel
``J D Jᵀ``; see :mod:`skntk._parameterization`), and
``S_l`` the back-propagated signals of all ``C`` logits, ``S_l S_lᵀ = Σ_c δ_{l,c}
δ_{l,c}ᵀ`` (shape ``(N, C·w_l)``, ``(N, w_l)`` for the last hidden layer, where the
logit sum collapses, and ``√C · 1`` for the output layer). For any ``P, Q`` and
column ``v``, ``((P Pᵀ) ∘ (Q Qᵀ)) v = diag(P (Pᵀ diag(v) Q) Qᵀ)``, so with
``M_l = Pᵀ diag(v) Q`` (shape ``(a, f)``) ``(K v)_i = Σ_l Σ_{a,f} P_ia Q_if M_l[a, f]``.
For ``k`` columns at once the ``M_l`` are formed as one matrix product of ``P ⊗ V``
(shape ``(N, a·k)``) with ``Q``, and read back as one product of ``Q`` with
``M_lᵀ``; ``P`` is the narrower factor of the pair. That costs
``4 · N · k · Σ_l a_l f_l`` flops and ``O(N · Σ_l (a_l + f_l))`` memory, never
``O(N²)``; it is exact (the same kernel as :func:`skntk.ntk.empirical_ntk`).
For 64 inputs, layers (256, 256) and 10 classes: ``Σ a f ≈ 2.3 · 10⁵``, about
470 GFLOP per product with ``k = 10`` columns at ``N = 50000`` (3.5-6 s measured on
2 cores), against ``C · P ≈ 8.5 · 10⁵`` per sample and column for a product
through Jacobian-vector and vector-Jacobian products (7.7 times slower measured at
N = 4096, k = 10). The factors and the product are those of the kernel engine
(:mod:`skntk._kernel_engine`), shared with :func:`skntk.ntk.ntk_vector_product`.

All functions take parameters as a list of ``(W, b)`` pairs, ``W`` of shape
``(fan_in, fan_out)``, and compute the kernel product in the floating dtype of the
parameters and inputs (float32 unless the caller enables x64 and passes float64);
the Krylov recurrences run in float64 with numpy.
"""

import copy
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from . import _model_kernel as model_kernel
from ._kernel_engine import (apply_to_inputs, apply_to_pairs, check_positive_int,
                             diagonal_from_inputs, diagonal_from_pairs, layer_sizes,
                             moments_from_inputs, moments_from_pairs, ntk_vector_product,
                             pair_widths, pairs_of_blocks, prepare_inputs, product,
                             row_blocks)
from ._kernel_flow import (_check_flow_time, _check_ridge, amplifies_round_off,
                           drop_unresolved, flow_filter, resolution_rtol)
from ._network import MODEL_PRODUCT_BLOCK, is_mlp

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "KrylovFlow",
    "NystromPreconditioner",
    "TrainingKernel",
    "cross_kernel_apply",
    "fast_ntk_vector_product",
    "kernel_diagonal",
    "krylov_kernel_flow",
    "nystrom_preconditioner",
    "solve_kernel_flow_matrix_free",
]

DEFAULT_BLOCK_SIZE = 2048
"""Rows per block of the kernel-block product (bounds its temporaries)."""

DEFAULT_MAX_FEATURE_BYTES = 2 * 1024**3
"""Default budget for storing the layer factors of the training set (2 GiB)."""


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------

def _check_tol(tol):
    tol = float(tol)
    if not (0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol}.")
    return tol


def _check_residual(residual, n_samples):
    R = np.asarray(residual)
    if np.iscomplexobj(R):
        raise ValueError(f"residual must be real, got dtype {R.dtype}.")
    if R.ndim != 2 or R.shape[0] != n_samples:
        raise ValueError(
            f"residual must have shape ({n_samples}, n_outputs) to match X, got {R.shape}.")
    R = R.astype(np.float64)
    if not np.all(np.isfinite(R)):
        raise ValueError(
            "The residual Y - F0 contains NaN or infinite values. This usually means the "
            "network diverged before the kernel phase; try a smaller learning rate.")
    return R




# --------------------------------------------------------------------------------------
# The kernel-block product
# --------------------------------------------------------------------------------------

def fast_ntk_vector_product(params, X, V, *, X2=None, block_size=DEFAULT_BLOCK_SIZE,
                            layer_scales=None):
    """Traced NTK times a matrix, ``K(X, X2) @ V``, layer by layer, without forming ``K``.

    :func:`skntk.ntk.ntk_vector_product` with the per-layer scales of the
    parameterisation given directly and this module's default block size: the same
    product (:func:`skntk._kernel_engine.ntk_vector_product`) with the same input checks.
    By the low-rank Hadamard identity of the module docstring it needs about
    ``C · P / Σ_l a_l f_l`` times fewer flops than one Jacobian-vector product per logit
    and column for an MLP with ``P`` parameters (3.7 for 64 inputs, layers (256, 256),
    10 classes; 7.7 times faster measured, thanks to larger matrix products).

    Parameters
    ----------
    params : sequence of (W, b)
        Network parameters, ``W`` of shape ``(fan_in, fan_out)``, ``b`` of shape
        ``(fan_out,)``.
    X : array-like of shape (n1, n_features)
        Row inputs.
    V : array-like of shape (n2,) or (n2, k)
        Vector(s) to multiply.
    X2 : array-like of shape (n2, n_features), default=None
        Column inputs; ``None`` means ``X``.
    block_size : int, default=2048
        Rows processed at a time (at most the number of samples); the last block is
        zero-padded so one block shape compiles.
    layer_scales : tuple of (float, float) or None, default=None
        The per-layer scales ``D`` of the parameterisation
        (:func:`skntk._parameterization.layer_scales`); ``None``: standard.

    Returns
    -------
    KV : jax.Array of shape (n1,) or (n1, k)
        ``K(X, X2) @ V`` with ``K`` the traced kernel of
        :func:`skntk.ntk.empirical_ntk` (``J D Jᵀ`` with ``layer_scales``), in the
        floating dtype of the inputs.

    Raises
    ------
    ValueError
        If ``V`` has the wrong number of rows or more than two axes, the inputs do not
        match the network, ``block_size`` is not a positive integer, or any input holds
        NaN or infinite values.
    TypeError
        If ``X``, ``X2`` or ``V`` is a scipy sparse matrix or ``params`` is not a
        sequence of ``(W, b)`` pairs.

    Notes
    -----
    With ``(a_l, f_l)`` the widths of the two factors of layer ``l`` (see the module
    docstring): time ``4 · (n1 + n2) / 2 · k · Σ_l a_l f_l`` flops plus one forward and
    ``C``-logit backward pass over ``X`` and ``X2``; memory
    ``itemsize · (k · Σ_l a_l f_l + 3 · b · Σ_l (k · a_l + f_l))`` with
    ``b = block_size``: the moments and the temporaries of one block, independent of
    ``n1`` and ``n2`` apart from the output.
    """
    return ntk_vector_product(params, X, V, X2=X2, block_size=block_size, scales=layer_scales)


def kernel_diagonal(params, X, n_classes, *, block_size=DEFAULT_BLOCK_SIZE, layer_scales=None):
    """``K_bar(x, x) = K(x, x) / C`` for every row of ``X``, without any kernel matrix.

    ``K(x, x) = Σ_l ‖P_l(x)‖² ‖Q_l(x)‖²`` from the layer factors of the module
    docstring: one forward and one ``C``-logit backward pass per block of rows, no
    ``n x n`` (nor ``block x block``) kernel. The same kernel as the diagonal of
    :func:`skntk.ntk.empirical_ntk`, to float rounding.

    Parameters
    ----------
    params : sequence of (W, b)
        Network parameters.
    X : array-like of shape (n, n_features)
        Inputs, ``n >= 1``.
    n_classes : int
        ``C``, the divisor of the traced kernel.
    block_size : int, default=2048
        Rows per block (the last block is zero-padded, so one block shape compiles).
    layer_scales : tuple of (float, float) or None, default=None
        Per-layer scales ``D`` of the parameterisation (the kernel is ``J D Jᵀ``;
        :func:`skntk._parameterization.layer_scales`); ``None``: standard. A model
        in their place (:mod:`skntk._network`): ``Σ_c ||J_c(x)||²`` from its
        per-sample Jacobians, block by block.

    Returns
    -------
    diagonal : ndarray of shape (n,), float64
        Computed in the floating dtype of the inputs, returned as float64.
    """
    n_classes = check_positive_int(n_classes, "n_classes")
    block_size = check_positive_int(block_size, "block_size")
    if not is_mlp(layer_scales):
        return TrainingKernel(params, X, n_classes, block_size=block_size,
                              layer_scales=layer_scales).diagonal()
    params, X, _, _ = prepare_inputs(params, X, names=("X", "X2"))
    diag = diagonal_from_inputs(params, row_blocks(X, min(block_size, X.shape[0])),
                                layer_scales)
    return np.asarray(diag, dtype=np.float64).reshape(-1)[:X.shape[0]] / n_classes


class TrainingKernel:
    """The operator ``V ↦ K_bar V + ρ V`` on a fixed training set, ``K_bar = K / C``.

    The layer factors of the training set are computed once and stored when they fit
    in ``max_bytes``; otherwise they are recomputed block by block at every product
    (one forward and one ``C``-logit backward pass more per product).

    Parameters
    ----------
    params : sequence of (W, b)
        Network parameters at the expansion point ``θ*``.
    X : array-like of shape (n_samples, n_features)
        Training inputs.
    n_classes : int
        ``C``, the divisor of the traced kernel.
    ridge : float, default=0.0
        ``ρ``, added to the diagonal.
    block_size : int, default=2048
        Rows per block.
    max_bytes : int, float or None, default=None
        Budget for the stored factors, ``itemsize · n_samples · Σ_l (a_l + f_l)``
        bytes (663 MiB for 50000 samples, 64 inputs, layers (256, 256), 10 classes);
        ``None`` means 2 GiB, ``0`` never stores them.
    layer_scales : tuple of (float, float) or None, default=None
        The per-layer scales ``D`` of the parameterisation: the kernel is
        ``J D Jᵀ`` (``None``: standard, ``J Jᵀ``).
    row_scale : ndarray of shape (n_samples,) or None, default=None
        ``s``, the square roots of the sample weights: the operator is then
        ``diag(s) K_bar diag(s) + ρI``, that of weighted kernel regression
        (``None``: ``s = 1``).

    Attributes
    ----------
    n_samples, n_classes, ridge, dtype, layer_scales : int, int, float, numpy dtype, tuple
        As given (``dtype``: that of the product, float32 by default).
    width : int
        Outputs of the network: the column count the preconditioner's sketch uses, so
        that it reuses the compiled product of the solver.
    factor_bytes : int
        Size of the layer factors of the training set.
    stores_factors : bool
        Whether they are stored (``factor_bytes <= max_bytes``).
    n_products : int
        Kernel-block products (calls of :meth:`kernel_product`) so far.
    """

    def __init__(self, params, X, n_classes, ridge=0.0, *, block_size=DEFAULT_BLOCK_SIZE,
                 max_bytes=None, layer_scales=None, row_scale=None):
        block_size = check_positive_int(block_size, "block_size")
        self.row_scale = None if row_scale is None else np.asarray(row_scale, np.float64)
        self.layer_scales = layer_scales
        self.n_classes = check_positive_int(n_classes, "n_classes")
        self.ridge = _check_ridge(ridge)
        self.n_products = 0
        if not is_mlp(layer_scales):
            self._init_model(params, X, block_size)
            return
        self.params, X, _, self.dtype = prepare_inputs(params, X, names=("X", "X2"))
        self.n_samples = X.shape[0]
        self.width = self.params[-1][0].shape[1]
        self.block = min(block_size, self.n_samples)
        self._X_blocks = row_blocks(X, self.block)
        widths = pair_widths(layer_sizes(self.params))
        self.factor_bytes = (np.dtype(self.dtype).itemsize * self._X_blocks.shape[0]
                             * self.block * sum(a + f for a, f in widths))
        budget = DEFAULT_MAX_FEATURE_BYTES if max_bytes is None else max_bytes
        self.stores_factors = self.factor_bytes <= budget
        self._pairs = None
        if self.stores_factors:
            self._pairs = jax.block_until_ready(pairs_of_blocks(self.params, self._X_blocks,
                                                           self.layer_scales))

    def _init_model(self, params, X, block_size):
        """A model (:mod:`skntk._network`) has no layer factors: every product is an
        NTK-vector product by automatic differentiation (:mod:`skntk._model_kernel`)."""
        self.params = jax.tree.map(jnp.asarray, params)
        X = jnp.asarray(X)
        self.dtype = X.dtype
        self.n_samples = X.shape[0]
        self.width = self.n_classes
        self.block = min(block_size, MODEL_PRODUCT_BLOCK, self.n_samples)
        self._X_blocks = row_blocks(X, self.block)
        self.factor_bytes, self.stores_factors, self._pairs = 0, False, None

    def _model_product(self, V_blocks):
        G = model_kernel.pull_back(self.layer_scales, self.params, self._X_blocks, V_blocks)
        return model_kernel.push_forward(self.layer_scales, self.params, self._X_blocks, G)

    def kernel_product(self, V):
        """``K_bar V`` (without the ridge) for ``V`` of shape ``(n_samples, k)``.

        Returns a float64 numpy array of shape ``(n_samples, k)``; the product itself
        runs in :attr:`dtype`. Raises a ``ValueError`` if it is not finite (a kernel
        that overflows), before any solver sees it.
        """
        V = np.asarray(V)
        if self.row_scale is not None:
            V = V * self.row_scale[:, None]
        k = V.shape[1]
        V_blocks = row_blocks(jnp.asarray(V, dtype=self.dtype), self.block)
        if not is_mlp(self.layer_scales):
            out = self._model_product(V_blocks)
        elif self.stores_factors:
            moments = moments_from_pairs(self._pairs, V_blocks)
            out = apply_to_pairs(self._pairs, moments, k)
        else:
            moments = moments_from_inputs(self.params, self._X_blocks, V_blocks,
                                          self.layer_scales)
            out = apply_to_inputs(self.params, self._X_blocks, moments, k, self.layer_scales)
        self.n_products += 1
        out = np.asarray(out, dtype=np.float64).reshape(-1, k)[:self.n_samples]
        if not np.all(np.isfinite(out)):
            raise ValueError(
                f"The kernel-block product K_bar V of the matrix-free kernel phase holds "
                f"NaN or infinite values: the empirical NTK at the expansion point "
                f"overflows {np.dtype(self.dtype).name} (its entries grow like the square "
                f"of the input scale), or the network diverged before the phase. "
                f"Standardise the inputs (e.g. with sklearn.preprocessing.StandardScaler) "
                f"or lower the SGD `learning_rate`.")
        if self.row_scale is not None:
            out *= self.row_scale[:, None]
        return out / self.n_classes

    def with_ridge(self, ridge):
        """A copy for another ridge that shares the stored factors (no recomputation)."""
        other = copy.copy(self)
        other.ridge = _check_ridge(ridge)
        other.n_products = 0
        return other

    def diagonal(self):
        """``diag(K_bar)`` (without the ridge), float64 of shape ``(n_samples,)``.

        ``K(x, x) = Σ_l ‖P_l(x)‖² ‖Q_l(x)‖²``: no product; e.g. ``diagonal().mean()``
        is the scale of ``K_bar`` against which to choose the ridge.
        """
        if not is_mlp(self.layer_scales):
            diag = model_kernel.diagonal(self.layer_scales, self.params, self._X_blocks)
        elif self.stores_factors:
            diag = diagonal_from_pairs(self._pairs)
        else:
            diag = diagonal_from_inputs(self.params, self._X_blocks, self.layer_scales)
        diag = np.asarray(diag, dtype=np.float64).reshape(-1)[:self.n_samples]
        if self.row_scale is not None:
            diag = diag * self.row_scale ** 2
        return diag / self.n_classes

    def matvec(self, V):
        """``(K_bar + ρI) V`` as a float64 numpy array of shape ``(n_samples, k)``."""
        V = np.asarray(V, dtype=np.float64)
        out = self.kernel_product(V)
        if self.ridge:
            out += self.ridge * V
        return out


def _operator(operator, params, X, n_classes, ridge, block_size, max_bytes,
              layer_scales=None):
    """The given operator after checking it matches, or a new one."""
    if operator is None:
        return TrainingKernel(params, X, n_classes, ridge, block_size=block_size,
                              max_bytes=max_bytes, layer_scales=layer_scales)
    if operator.ridge != _check_ridge(ridge) or operator.n_classes != n_classes:
        raise ValueError(
            f"The operator was built for ridge={operator.ridge}, n_classes="
            f"{operator.n_classes}, not ridge={ridge}, n_classes={n_classes}.")
    if operator.layer_scales != layer_scales:
        raise ValueError(
            f"The operator was built for layer_scales={operator.layer_scales}, not "
            f"{layer_scales}.")
    return operator


# --------------------------------------------------------------------------------------
# t = inf: conjugate gradients
# --------------------------------------------------------------------------------------

def _column_norms(A):
    return np.sqrt(np.einsum("ij,ij->j", A, A))


class NystromPreconditioner(NamedTuple):
    """Randomized Nyström preconditioner of ``K_bar + ρI`` (Frangella, Tropp and Udell,
    SIAM J. Matrix Anal. Appl. 44, 2023, "Randomized Nyström preconditioning").

    With ``K_bar ≈ U diag(λ) Uᵀ`` (rank ``s``, from :func:`nystrom_preconditioner`)::

        P⁻¹ = (λ_s + ρ) U diag(λ + ρ)⁻¹ Uᵀ + (I - U Uᵀ),

    which maps the ``s`` largest eigenvalues of ``K_bar + ρI`` to about ``λ_s + ρ``
    and leaves the rest, so PCG converges like CG with condition number
    ``(λ_{s+1} + ρ) / ρ`` instead of ``(λ_1 + ρ) / ρ``.

    Fields: ``U`` (N, s) float64 orthonormal; ``eigenvalues`` (s,) float64, descending,
    positive; ``ridge``.
    """

    U: np.ndarray
    eigenvalues: np.ndarray
    ridge: float

    def apply(self, R):
        """``P⁻¹ R`` for ``R`` of shape ``(N, k)`` (float64)."""
        if self.eigenvalues.size == 0:
            return R
        UtR = self.U.T @ R
        scale = (self.eigenvalues[-1] + self.ridge) / (self.eigenvalues + self.ridge)
        return R + self.U @ ((scale - 1.0)[:, None] * UtR)


def nystrom_preconditioner(operator, rank, random_state=0):
    """Build a :class:`NystromPreconditioner` from ``ceil(rank / k)`` kernel-block
    products of ``k = C`` columns (the width the solver compiles for).

    Parameters
    ----------
    operator : TrainingKernel
        The operator ``K_bar + ρI``.
    rank : int
        Sketch size ``s`` (rounded up to a multiple of ``k``, at most ``N``).
    random_state : int, default=0
        Seed of the Gaussian test matrix.

    Returns
    -------
    preconditioner : NystromPreconditioner

    Notes
    -----
    The stabilised algorithm of Frangella et al. (Algorithm 2.1): orthonormal test
    matrix ``Ω``, ``Y = K_bar Ω``, shift ``ν = √N · eps · ‖Y‖₂`` (``eps`` of the
    product's dtype), ``K̂ = Y_ν (Ωᵀ Y_ν)⁻¹ Y_νᵀ = B Bᵀ`` through a Cholesky factor,
    eigenvalues ``max(σ(B)² - ν, 0)``; directions whose eigenvalue is not above
    ``ν`` are dropped. Memory: a few ``N x s`` float64 arrays.
    """
    n = operator.n_samples
    width = operator.width
    rank = min(-(-int(rank) // width) * width, n)
    rng = np.random.default_rng(random_state)
    omega, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    Y = np.concatenate([operator.kernel_product(_pad_columns(omega[:, i:i + width], width))
                        [:, :min(width, rank - i)] for i in range(0, rank, width)], axis=1)
    eps = np.finfo(np.dtype(operator.dtype)).eps
    gram = Y.T @ Y
    nu = np.sqrt(n) * eps * np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0))
    for _ in range(10):
        Y_nu = Y + nu * omega
        core = omega.T @ Y_nu
        try:
            L = np.linalg.cholesky(0.5 * (core + core.T))
            break
        except np.linalg.LinAlgError:
            nu = max(10 * nu, np.finfo(np.float64).tiny)
    else:  # pragma: no cover - a non-finite kernel
        return NystromPreconditioner(np.zeros((n, 0)), np.zeros(0), operator.ridge)
    B = scipy.linalg.solve_triangular(L, Y_nu.T, lower=True).T
    U, sigma, _ = np.linalg.svd(B, full_matrices=False)
    lam = sigma**2 - nu
    keep = lam > nu
    return NystromPreconditioner(U[:, keep], lam[keep], operator.ridge)


def _resolution_ridge(operator, preconditioner):
    """The operator and preconditioner with the ridge raised to the kernel's resolution.

    ``K_bar`` is applied in :attr:`TrainingKernel.dtype`, so its eigenvalues below
    ``rtol · λ_max`` (:func:`skntk._kernel_flow.resolution_rtol`) are round-off, which
    the dense solver drops (:func:`skntk._kernel_flow.eigendecompose_kernel`). Conjugate
    gradients cannot drop them; a ridge of that size damps them instead, so that the
    coefficients stay within what the kernel resolves and the iteration converges.
    ``λ_max`` is bounded by ``trace(K_bar)`` (no product needed), so the ridge is at
    least ``rtol · trace(K_bar)``; a larger ``operator.ridge`` is kept.
    """
    top = float(operator.diagonal().sum())
    floor = resolution_rtol(operator.n_samples, operator.dtype) * top
    if not operator.ridge < floor:
        return operator, preconditioner
    operator = operator.with_ridge(floor)
    if preconditioner is not None:
        preconditioner = preconditioner._replace(ridge=floor)
    return operator, preconditioner


def _pad_columns(V, width):
    if V.shape[1] == width:
        return V
    return np.pad(V, [(0, 0), (0, width - V.shape[1])])


def _conjugate_gradients(operator, B, tol, max_iter, preconditioner=None, max_restarts=3):
    """Independent (preconditioned) CG on every column of ``B``, sharing one kernel-block
    product per iteration.

    Converged columns are frozen. When the recursive residuals all meet ``tol`` the
    true residual is computed (one product); if it does not, CG restarts from the
    current iterate with the true residual, as long as restarting still helps (at
    least a halving per restart, at most ``max_restarts`` times): with a float32
    product the attainable residual is limited by round-off.
    """
    n, k = B.shape
    precondition = (lambda R: R) if preconditioner is None else preconditioner.apply
    b_norm = _column_norms(B)
    safe = np.where(b_norm > 0, b_norm, 1.0)
    X = np.zeros_like(B)
    R = B.copy()
    iterations = np.zeros(k, dtype=np.int64)
    history = []
    total = 0
    best_true = np.inf
    restarts = 0
    while True:
        rel = _column_norms(R) / safe
        active = rel > tol
        Z = precondition(R)
        P = Z.copy()
        rz = np.einsum("ij,ij->j", R, Z)
        while active.any() and total < max_iter:
            Q = operator.matvec(P)
            pq = np.einsum("ij,ij->j", P, Q)
            alpha = np.where(active & (pq > 0), rz / np.where(pq > 0, pq, 1.0), 0.0)
            X += alpha * P
            R -= alpha * Q
            total += 1
            iterations += active
            rel = _column_norms(R) / safe
            history.append(rel)
            Z = precondition(R)
            rz_new = np.einsum("ij,ij->j", R, Z)
            beta = np.where(active, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
            rz = np.where(active, rz_new, rz)
            active &= rel > tol
            P = np.where(active, Z + beta * P, P)
        # True residual: one more product, and K_bar A from it.
        KX = operator.kernel_product(X)
        R = B - KX - operator.ridge * X
        true_rel = _column_norms(R) / safe
        worst = true_rel.max() if k else 0.0
        if (worst <= tol or total >= max_iter or restarts >= max_restarts
                or worst > 0.5 * best_true):
            break
        best_true = worst
        restarts += 1
    converged = bool(np.all(true_rel <= tol))
    return X, KX, {"iterations": total, "iterations_per_output": iterations,
                   "residual_norm": true_rel, "converged": converged,
                   "restarts": restarts,
                   "residual_history": np.asarray(history).reshape(-1, k)}


# --------------------------------------------------------------------------------------
# Finite t: Lanczos approximation of g(K_bar + ρI) R
# --------------------------------------------------------------------------------------

def _tridiagonal_function(alpha, beta, t, n_samples, rtol=0.0):
    """``g(T) e_1`` and ``T g(T) e_1`` for the Lanczos tridiagonal ``T``, with ``g`` the
    flow filter of the dense solver (:func:`skntk._kernel_flow.flow_filter`) on the
    Ritz values; those up to ``rtol`` times the largest are null directions (0) when
    the flow would amplify their round-off
    (:func:`skntk._kernel_flow.amplifies_round_off`), as in the dense solver."""
    if alpha.size == 0:
        return np.zeros(0), np.zeros(0)
    if alpha.size == 1:
        theta, S = alpha.copy(), np.ones((1, 1))
    else:
        theta, S = scipy.linalg.eigh_tridiagonal(alpha, beta)
    theta = np.clip(theta, 0.0, None)
    if amplifies_round_off(t, n_samples, rtol * theta.max()):
        theta = drop_unresolved(theta, rtol)
    y = S @ (flow_filter(theta, t, n_samples) * S[0])
    Ty = alpha * y
    Ty[:-1] += beta * y[1:]
    Ty[1:] += beta * y[:-1]
    return y, Ty


class KrylovFlow(NamedTuple):
    """Lanczos decompositions ``(K_bar + ρI) V_m = V_m T_m + β_m v_{m+1} e_mᵀ`` of every
    residual column, from :func:`krylov_kernel_flow`; :meth:`evaluate` gives the
    coefficients and train outputs at any flow time from them.

    Fields: ``basis`` (C, m_max + 1, N) orthonormal Lanczos vectors in the product's
    dtype; ``alpha`` (C, m_max) and ``beta`` (C, m_max) the entries of ``T``
    (``beta[c, j]`` below ``alpha[c, j]``); ``lengths`` (C,) the steps ``m_c`` of each
    column; ``residual_norm`` (C,) ``‖R[:, c]‖``; ``ridge``; ``n_samples``; ``info``:
    the build's iteration counts and convergence estimates (see
    :func:`krylov_kernel_flow`).
    """

    basis: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    lengths: np.ndarray
    residual_norm: np.ndarray
    ridge: float
    n_samples: int
    info: dict
    rtol: float = 0.0

    def evaluate(self, t):
        """Coefficients and train-output update at flow time ``t``.

        Parameters
        ----------
        t : float
            Flow time ``>= 0`` (``numpy.inf`` allowed, though CG serves that limit with
            less memory). Accurate up to the time the flow was built for; smaller
            times converge at least as fast in practice (``g`` is smoother).

        Returns
        -------
        coefficients : ndarray of shape (N, C), float64
            ``A ≈ g(K_bar + ρI) R``.
        train_update : ndarray of shape (N, C), float64
            ``K_bar A``, so that ``f_t(X) = F0 + train_update``; from the Lanczos
            relation ``K_bar V_m y = V_m (T_m - ρI) y + β_m y_m v_{m+1}``, no product.
        error_estimate : ndarray of shape (C,), float64
            ``‖A_m - A_{m-1}‖ / ‖A_m‖`` per column: the change of the coefficients
            over the last Lanczos step.
        """
        t = _check_flow_time(t)
        n_outputs = self.lengths.shape[0]
        A = np.zeros((self.n_samples, n_outputs))
        KA = np.zeros_like(A)
        estimate = np.zeros(n_outputs)
        for c in range(n_outputs):
            m = int(self.lengths[c])
            if m == 0 or t == 0:
                continue
            a, b = self.alpha[c, :m], self.beta[c, :m]
            y, Ty = _tridiagonal_function(a, b[:m - 1], t, self.n_samples, self.rtol)
            y_prev, _ = _tridiagonal_function(a[:m - 1], b[:m - 2], t, self.n_samples,
                                              self.rtol)
            y *= self.residual_norm[c]
            y_prev *= self.residual_norm[c]
            diff = y.copy()
            diff[:m - 1] -= y_prev
            estimate[c] = np.linalg.norm(diff) / max(np.linalg.norm(y), 1e-300)
            ky = self.residual_norm[c] * Ty - self.ridge * y
            V = self.basis[c, :m]
            A[:, c] = y.astype(V.dtype) @ V
            KA[:, c] = ky.astype(V.dtype) @ V + b[m - 1] * y[-1] * self.basis[c, m]
        return A, KA, estimate


def krylov_kernel_flow(params_star, X, residual, t, ridge, n_classes, *, tol=1e-5,
                       max_iter=500, block_size=DEFAULT_BLOCK_SIZE, max_bytes=None,
                       operator=None, layer_scales=None):
    """Lanczos decompositions for ``A = g(K_bar + ρI) R`` at every flow time up to ``t``.

    Runs the Lanczos process on ``K_bar + ρI`` from each column of ``R`` (all columns
    share one kernel-block product per step), with full reorthogonalisation (classical
    Gram-Schmidt, twice), until ``g(T_m) e_1`` at time ``t`` changes by less than
    ``tol`` (relative) over two consecutive steps, for every column.

    Parameters
    ----------
    params_star : sequence of (W, b)
        Network parameters at the expansion point ``θ*``.
    X : array-like of shape (N, n_features)
        Training inputs.
    residual : array-like of shape (N, C)
        ``R = Y - F0``.
    t : float
        The largest flow time to be evaluated, ``> 0`` (convergence is checked there).
    ridge : float
        ``ρ >= 0``.
    n_classes : int
        ``C`` of ``K_bar = K / C``.
    tol : float, default=1e-5
        Relative change of the coefficients between steps that stops a column.
    max_iter : int, default=500
        Most Lanczos steps (kernel-block products).
    block_size : int, default=2048
        Rows per block of the kernel-block product.
    max_bytes : int or None, default=None
        Budget of the stored layer factors (see :class:`TrainingKernel`).
    operator : TrainingKernel, optional
        A prepared operator (its ``ridge`` is used), to share factors between calls.
    layer_scales : tuple of (float, float) or None, default=None
        The per-layer scales ``D`` of the parameterisation (:class:`TrainingKernel`);
        a given ``operator`` must have been built with the same.

    Returns
    -------
    flow : KrylovFlow
        Evaluate with ``flow.evaluate(t)``. ``flow.info`` has ``"method"``
        (``"lanczos"``), ``"iterations"`` (steps, one kernel-block product each),
        ``"iterations_per_output"`` (C,), ``"residual_norm"`` (C,) the final relative
        change of the coefficients (the convergence estimate), ``"converged"`` and
        ``"residual_history"`` (iterations, C).

    Notes
    -----
    ``g(M) r ≈ ‖r‖ V_m g(T_m) e_1`` (Saad 1992) is exact once the Krylov space is
    invariant; its error decays like that of CG on ``M + (N/t) I`` since ``g`` is
    bounded by ``t/N``. Memory: the basis, ``itemsize · C · (m + 1) · N`` bytes
    (40 MB per 100 steps for N = 50000, C = 10, float32), plus the operator's factors.
    The ``t = inf`` limit with ``ρ = 0`` differs from the dense pseudo-inverse only on
    null directions of ``K_bar``, which never reach an output.
    """
    t = _check_flow_time(t)
    tol = _check_tol(tol)
    max_iter = check_positive_int(max_iter, "max_iter")
    operator = _operator(operator, params_star, X, n_classes, ridge, block_size, max_bytes,
                         layer_scales)
    R = _check_residual(residual, operator.n_samples)
    n, k = R.shape
    dtype = np.dtype(operator.dtype)
    r_norm = _column_norms(R)
    basis = np.zeros((k, max_iter + 1, n), dtype=dtype)
    alpha = np.zeros((k, max_iter))
    beta = np.zeros((k, max_iter))
    lengths = np.zeros(k, dtype=np.int64)
    active = (r_norm > 0) & (t > 0)
    Qc = np.where(active, R / np.where(r_norm > 0, r_norm, 1.0), 0.0)
    basis[:, 0] = Qc.T
    Q_prev = np.zeros_like(Qc)
    beta_prev = np.zeros(k)
    estimate = np.where(active, np.inf, 0.0)
    small_steps = np.zeros(k, dtype=np.int64)
    y_last = [np.zeros(0) for _ in range(k)]
    history = []
    steps = 0
    scale = np.zeros(k)
    eps = np.finfo(dtype).eps
    rtol = resolution_rtol(n, dtype)
    for j in range(max_iter):
        if not active.any():
            break
        W = operator.matvec(Qc)
        a = np.einsum("ij,ij->j", Qc, W)
        W -= a * Qc + beta_prev * Q_prev
        for _ in range(2):  # CGS2 against the whole basis
            h = np.matmul(basis[:, :j + 1], W.T.astype(dtype)[:, :, None])
            W -= np.matmul(basis[:, :j + 1].transpose(0, 2, 1), h)[:, :, 0].T
        b = _column_norms(W)
        steps += 1
        alpha[active, j] = a[active]
        beta[active, j] = b[active]
        lengths[active] += 1
        scale = np.maximum(scale, np.abs(a) + b)
        for c in np.flatnonzero(active):
            m = lengths[c]
            y, _ = _tridiagonal_function(alpha[c, :m], beta[c, :m - 1], t, n, rtol)
            diff = y.copy()
            diff[:m - 1] -= y_last[c]
            estimate[c] = np.linalg.norm(diff) / max(np.linalg.norm(y), 1e-300)
            y_last[c] = y
        history.append(estimate.copy())
        small_steps = np.where(estimate < tol, small_steps + 1, 0)
        # An invariant subspace (β at round-off level) makes the approximation exact;
        # so does a basis that spans the whole space.
        breakdown = (b <= 100 * eps * np.where(scale > 0, scale, 1.0)) | (lengths >= n)
        estimate = np.where(active & breakdown, 0.0, estimate)
        # The next Lanczos vector, kept for the columns that stop now too (it enters
        # K_bar A through the β_m v_{m+1} term of the Lanczos relation).
        Q_next = np.where(active & ~breakdown, W / np.where(b > 0, b, 1.0), 0.0)
        basis[:, j + 1] = Q_next.T
        active &= ~(breakdown | (small_steps >= 2))
        Q_prev = Qc
        Qc = np.where(active, Q_next, 0.0)
        beta_prev = b
    info = {"method": "lanczos", "iterations": steps, "iterations_per_output": lengths.copy(),
            "residual_norm": estimate, "converged": bool(np.all(estimate <= tol)),
            "residual_history": np.asarray(history).reshape(-1, k)}
    return KrylovFlow(basis, alpha, beta, lengths, r_norm, operator.ridge, n, info, rtol)


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------

def solve_kernel_flow_matrix_free(params_star, X, residual, t, ridge, n_classes, *,
                                  tol=1e-5, max_iter=500, block_size=DEFAULT_BLOCK_SIZE,
                                  max_bytes=None, preconditioner_rank=200, random_state=0,
                                  operator=None, layer_scales=None):
    """Coefficients ``A = g(K_bar + ρI)(Y - F0)`` of the kernel phase, without ``K_bar``.

    Parameters
    ----------
    params_star : sequence of (W, b)
        Network parameters at the expansion point ``θ*``.
    X : array-like of shape (N, n_features)
        Training inputs.
    residual : array-like of shape (N, C)
        ``R = Y - F0``: one-hot targets minus network outputs at ``θ*``.
    t : float
        Flow time ``η · n >= 0``; ``numpy.inf`` gives kernel regression
        ``A = (K_bar + ρI)⁻¹ R``, solved by conjugate gradients; a finite ``t`` uses
        the Lanczos approximation of :func:`krylov_kernel_flow`; ``t = 0`` gives zeros.
    ridge : float
        ``ρ >= 0`` added to the diagonal of ``K_bar``. At ``t = inf`` it bounds the
        condition number, hence the CG iterations; there it is raised to at least
        ``N · eps · trace(K_bar)`` (``eps`` of the product's dtype), the size of the
        kernel's round-off, below which the dense solver drops eigenvalues.
    n_classes : int
        ``C``: ``K_bar = K / C``.
    tol : float, default=1e-5
        CG: relative residual ``‖R - (K_bar + ρI) A‖ / ‖R‖`` per column. Lanczos: relative
        change of the coefficients over a step, two steps in a row. With a float32
        kernel product the attainable residual is about 1e-6 (1.3e-6 measured for
        N = 10000, 64 inputs, layers (256, 256)); smaller values may not be reached,
        and ``info["converged"]`` then says False.
    max_iter : int, default=500
        Most iterations (kernel-block products of all C columns at once).
    block_size : int, default=2048
        Rows per block of the kernel-block product.
    max_bytes : int or None, default=None
        Budget of the stored layer factors of the training set (:class:`TrainingKernel`);
        ``None`` means 2 GiB.
    preconditioner_rank : int, default=200
        ``t = inf`` only: rank ``s`` of the randomized Nyström preconditioner
        (:func:`nystrom_preconditioner`), built from ``ceil(s / C)`` kernel-block
        products; ``0`` runs plain CG. It pays when the top of the spectrum is far above
        ``ρ``, as for the NTK (eigenvalues up to about ``N`` times the mean diagonal):
        for N = 50000 (64 inputs, layers (256, 256), ``ρ`` = mean diagonal) rank 100
        took 60 iterations + 10 sketch products, rank 200 37 + 20.
    random_state : int, default=0
        Seed of the preconditioner's random test matrix.
    operator : TrainingKernel, optional
        A prepared operator for ``(params_star, X, n_classes, ridge)``, to share the
        stored factors between calls (see :meth:`TrainingKernel.with_ridge`).
    layer_scales : tuple of (float, float) or None, default=None
        The per-layer scales ``D`` of the parameterisation (:class:`TrainingKernel`).

    Returns
    -------
    coefficients : ndarray of shape (N, C), float64
        ``A``; predictions are ``f_0(x) + K_bar(x, X) A`` (:func:`cross_kernel_apply`).
    info : dict
        ``"method"``: ``"cg"`` or ``"lanczos"`` (or ``"none"`` at ``t = 0``);
        ``"iterations"``: int, kernel-block products of the iteration;
        ``"iterations_per_output"``: (C,) iterations until each column converged;
        ``"residual_norm"``: (C,) final relative residual (CG, recomputed with one extra
        product) or convergence estimate (Lanczos); ``"converged"``: bool;
        ``"residual_history"``: (iterations, C); ``"train_update"``: (N, C) float64,
        ``K_bar A``, so that the training outputs are ``f_t(X) = F0 + train_update``
        (``= Y + exp(-t K_bar/N)(F0 - Y)`` when ``ρ = 0``). CG only: ``"restarts"``
        (restarts from the true residual), ``"ridge"`` (the ridge used),
        ``"preconditioner_rank"`` (directions
        kept), ``"sketch_products"`` and ``"kernel_products"`` (all products: sketch,
        iterations and true-residual checks).

    Notes
    -----
    Memory: the stored factors (``TrainingKernel.factor_bytes``, 663 MiB for N = 50000,
    64 inputs, layers (256, 256), 10 classes, float32), a few ``(N, C)`` float64
    arrays, at ``t = inf`` about five ``(N, s)`` float64 arrays while the
    preconditioner is built (80 MB each for s = 200, N = 50000) and two kept, and for
    finite ``t`` the Lanczos basis (``itemsize · C · N`` per step). Time: one
    kernel-block product per iteration (see :mod:`skntk._matrix_free`). CG: Hestenes and
    Stiefel 1952; the preconditioner: Frangella, Tropp and Udell 2023; the flow: Lee et
    al., NeurIPS 2019; the Lanczos approximation of ``g``: Saad 1992.
    """
    t = _check_flow_time(t)
    tol = _check_tol(tol)
    max_iter = check_positive_int(max_iter, "max_iter")
    operator = _operator(operator, params_star, X, n_classes, ridge, block_size, max_bytes,
                         layer_scales)
    R = _check_residual(residual, operator.n_samples)
    if t == 0:
        zeros = np.zeros_like(R)
        return zeros, {"method": "none", "iterations": 0,
                       "iterations_per_output": np.zeros(R.shape[1], dtype=np.int64),
                       "residual_norm": np.zeros(R.shape[1]), "converged": True,
                       "residual_history": np.zeros((0, R.shape[1])),
                       "train_update": zeros.copy()}
    if np.isinf(t):
        products = operator.n_products
        preconditioner = None
        if preconditioner_rank:
            preconditioner = nystrom_preconditioner(operator, preconditioner_rank,
                                                    random_state)
        sketch_products = operator.n_products - products
        operator, preconditioner = _resolution_ridge(operator, preconditioner)
        A, KA, info = _conjugate_gradients(operator, R, tol, max_iter, preconditioner)
        info = {"method": "cg", **info, "train_update": KA, "ridge": operator.ridge,
                "preconditioner_rank": 0 if preconditioner is None
                else preconditioner.eigenvalues.size,
                "kernel_products": operator.n_products - products,
                "sketch_products": sketch_products}
        return A, info
    flow = krylov_kernel_flow(params_star, X, R, t, ridge, n_classes, tol=tol,
                              max_iter=max_iter, operator=operator,
                              layer_scales=layer_scales)
    A, KA, _ = flow.evaluate(t)
    return A, {**flow.info, "train_update": KA}


def cross_kernel_apply(params_star, X_new, X_train, coefficients, n_classes, *,
                       block_size=DEFAULT_BLOCK_SIZE, layer_scales=None):
    """``K_bar(X_new, X_train) A``, block by block, never forming the cross kernel.

    Parameters
    ----------
    params_star : sequence of (W, b)
        Network parameters at the expansion point ``θ*``.
    X_new : array-like of shape (n_new, n_features)
        Inputs to predict.
    X_train : array-like of shape (N, n_features)
        Training inputs.
    coefficients : array-like of shape (N, C)
        ``A`` from :func:`solve_kernel_flow_matrix_free`.
    n_classes : int
        ``C``: ``K_bar = K / C``.
    block_size : int, default=2048
        Rows per block (of ``X_train``, then of ``X_new``).
    layer_scales : tuple of (float, float) or None, default=None
        The per-layer scales ``D`` of the parameterisation (:class:`TrainingKernel`).

    Returns
    -------
    update : ndarray of shape (n_new, C), float64
        ``K_bar(X_new, X_train) A``; the outputs are ``f_t(x) = f_0(x) + update``.

    Raises
    ------
    ValueError
        If ``coefficients`` is not 2-D with one row per training input or holds NaN or
        infinite values, or the inputs do not match the network.

    Notes
    -----
    One pass over ``X_train`` forms the moments ``M_l`` of ``A`` (see the module
    docstring), one pass over ``X_new`` reads them back: time as one kernel-block
    product with ``(N + n_new) / 2`` rows, memory independent of ``N · n_new``. The layer
    factors are computed in the dtype of the parameters (float32, as the training
    kernel), the moments and their read-back in float64: the dual coefficients of a
    kernel regression are large and of both signs, and a float32 sum of their
    products with the kernel would cancel to round-off (Higham, "Accuracy and
    stability of numerical algorithms", 2nd ed., §4.2: the error of a sum grows with
    ``Σ |K_ij A_j|``, not with the result).
    """
    n_classes = check_positive_int(n_classes, "n_classes")
    block_size = check_positive_int(block_size, "block_size")
    A = np.asarray(coefficients)
    if A.ndim != 2:
        raise ValueError(f"coefficients must be 2-D, got shape {A.shape}.")
    if not is_mlp(layer_scales):
        return _model_cross_kernel_apply(layer_scales, params_star, X_new, X_train, A,
                                         n_classes, block_size)
    params, X_new, X_train, _ = prepare_inputs(params_star, X_new, X_train,
                                               names=("X_new", "X_train"))
    if A.shape[0] != X_train.shape[0]:
        raise ValueError(f"coefficients has {A.shape[0]} rows but X_train has "
                         f"{X_train.shape[0]}.")
    A = A.astype(np.float64)
    if not np.all(np.isfinite(A)):
        raise ValueError("coefficients contains NaN or infinite values.")
    with jax.enable_x64(True):
        out = product(params, X_new, jnp.asarray(A), X_train, block_size, layer_scales)
        out = np.asarray(out, dtype=np.float64)
    return out / n_classes


def _model_cross_kernel_apply(model, params_star, X_new, X_train, A, n_classes, block_size):
    """:func:`cross_kernel_apply` for a model (:mod:`skntk._network`): its NTK-vector
    products with the model run in float64, so that the sums over the large dual
    coefficients of both signs do not cancel to float32 round-off."""
    if A.shape[0] != np.shape(X_train)[0] or not np.all(np.isfinite(A)):
        raise ValueError(f"coefficients must be finite with one row per training input; "
                         f"got shape {A.shape} for {np.shape(X_train)[0]} inputs.")
    block = min(block_size, MODEL_PRODUCT_BLOCK)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params_star)
        out = model_kernel.blocked_product(
            model, params, jnp.asarray(X_new, jnp.float64), jnp.asarray(A, jnp.float64),
            jnp.asarray(X_train, jnp.float64), block)
        out = np.asarray(out, dtype=np.float64)
    return out / n_classes
