"""Empirical neural tangent kernels of the MLP, kernel-vector products, kernel statistics.

The empirical NTK (Jacot, Gabriel and Hongler, NeurIPS 2018, "Neural tangent kernel:
convergence and generalization in neural networks") of a network ``f(x; θ) ∈ R^C`` with
Jacobian ``J = ∂f/∂θ`` is, with the logit axis traced,

    K(x, x') = Σ_c ⟨J_c(x; θ), J_c(x'; θ)⟩.

For a dense layer ``z_l = h_{l-1} W_l + b_l`` the gradient of ``f_c`` with respect to
``W_l`` is the outer product ``h_{l-1} ⊗ δ_{l,c}`` with ``δ_{l,c} = ∂f_c/∂z_l``, and with
respect to ``b_l`` it is ``δ_{l,c}``. Inner products of outer products factor, so the
kernel of the MLP is a sum over layers of Hadamard products of two small Gram
matrices (the structure exploited by Novak, Sohl-Dickstein and Schoenholz, ICML 2022,
"Fast finite width neural tangent kernel"):

    K(x, x') = Σ_l (⟨h_{l-1}(x), h_{l-1}(x')⟩ + 1) · Σ_c ⟨δ_{l,c}(x), δ_{l,c}(x')⟩,

where ``+ 1`` is the bias, ``h_0 = x`` and, for the output layer, ``Σ_c ⟨δ, δ⟩ = C``.
This costs ``O(n1 · n2 · (d + Σ_l w_l + C · Σ_{l<L-1} w_l))`` time instead of the
``O(n1 · n2 · C · P)`` of contracting explicit per-sample Jacobians (``P`` parameters),
and no per-sample Jacobian is ever stored.

Parameters are a list of ``(W, b)`` pairs, ``W`` of shape ``(fan_in, fan_out)``, as in
``MLPClassifier.coefs_`` / ``intercepts_``; the network is
:func:`skntk._mlp.mlp_forward` (the activation ``φ`` on every hidden layer, ReLU
unless ``activation`` says otherwise; linear output).

``parameterization="ntk"`` (:func:`empirical_ntk`, :func:`ntk_gram`,
:func:`ntk_vector_product`) takes the Jacobian in the coordinates of the NTK
parameterisation, ``W_l = (σ_w/√n_{l-1}) ω_l``, ``b_l = σ_b β_l`` (Jacot et al. 2018;
Lee et al., NeurIPS 2019, eq. (1)): the kernel becomes ``J D Jᵀ``, each layer's input
Gram factor ``(σ_w²/n_{l-1}) ⟨h, h'⟩ + σ_b²`` instead of ``⟨h, h'⟩ + 1``.

The factors, row blocks, input checks and kernel-vector product live in
:mod:`skntk._kernel_engine`; the conventions (sum over the logits here, ``K / C`` in
the kernel phase) are on the documentation's "Method" page (``docs/method.rst``).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax

from . import _model_kernel as model_kernel
from ._activations import activation_of
from ._devices import constrain_rows, mesh_size
from ._kernel_engine import (block_starts, check_finite, check_params, check_positive_int,
                             feature_width, float_dtype, is_concrete, kernel, layer_features,
                             logits, prepare_inputs, prepare_vectors, product_bytes,
                             row_blocks)
from ._kernel_engine import combine as combine_features
from ._kernel_engine import layer_sizes as sizes_of
from ._kernel_engine import ntk_vector_product as _ntk_vector_product
from ._kernel_engine import product as _product
from ._network import is_mlp
from ._parameterization import check_parameterization, layer_scales, scale_params
from ._validation import refuse_sparse

__all__ = [
    "DEFAULT_MAX_KERNEL_BYTES",
    "centered_kernel_alignment",
    "check_kernel_budget",
    "effective_rank",
    "empirical_ntk",
    "empirical_ntk_reference",
    "frobenius_distance",
    "kernel_distance",
    "kernel_nbytes",
    "kernel_spectrum",
    "kernel_target_alignment",
    "model_ntk",
    "model_ntk_vector_product",
    "ntk_gram",
    "ntk_vector_product",
]

DEFAULT_MAX_KERNEL_BYTES = 2 * 1024**3
"""Default memory budget of :func:`empirical_ntk`: 2 GiB (output plus working set)."""

_DEFAULT_FIX_HINT = (
    "use fewer samples, a smaller `block_size`, or `skntk.ntk.ntk_vector_product`, "
    "which multiplies by the kernel without forming it")


# --------------------------------------------------------------------------------------
# Memory budget
# --------------------------------------------------------------------------------------

def _format_bytes(n_bytes):
    if n_bytes >= 1024**3:
        return f"{n_bytes / 1024**3:.2f} GiB"
    if n_bytes >= 1024**2 or not np.isfinite(n_bytes):
        return f"{n_bytes / 1024**2:.1f} MiB"
    return f"{n_bytes / 1024**2:.2g} MiB = {int(n_bytes):,} bytes"


def kernel_nbytes(n1, n2, dtype=np.float32, per_logit_classes=None):
    """Bytes of a kernel matrix.

    Parameters
    ----------
    n1, n2 : int
        Numbers of rows and columns (samples of ``X1`` and ``X2``).
    dtype : numpy dtype, default=numpy.float32
        Element type of the kernel.
    per_logit_classes : int or None, default=None
        Number of classes ``C`` for a per-logit kernel of shape ``(n1, n2, C, C)``;
        ``None`` for the traced kernel of shape ``(n1, n2)``.

    Returns
    -------
    n_bytes : int
        ``n1 * n2 * itemsize``, times ``C**2`` for a per-logit kernel.
    """
    n_bytes = int(n1) * int(n2) * np.dtype(dtype).itemsize
    if per_logit_classes is not None:
        n_bytes *= int(per_logit_classes) ** 2
    return n_bytes


def check_kernel_budget(n1, n2, dtype, max_bytes, what="kernel", fix_hint=_DEFAULT_FIX_HINT,
                        *, per_logit_classes=None, extra_bytes=0, budget_name="max_bytes",
                        held_bytes=0, held_what="other arrays"):
    """Refuse a kernel that would not fit in the memory budget, before allocating it.

    Parameters
    ----------
    n1, n2 : int
        Shape of the kernel, ``(n1, n2)``.
    dtype : numpy dtype
        Element type of the kernel.
    max_bytes : int, float or None
        Budget in bytes; ``None`` means :data:`DEFAULT_MAX_KERNEL_BYTES` (2 GiB),
        ``numpy.inf`` disables the check.
    what : str, default="kernel"
        Name of the matrix in the error message.
    fix_hint : str
        What lowers the cost, completing the sentence "To fit, ...".
    per_logit_classes : int or None, default=None
        ``C`` for a per-logit kernel of shape ``(n1, n2, C, C)``.
    extra_bytes : int, default=0
        Working memory needed beside the kernel itself: its copies and the
        temporaries of its computation.
    budget_name : str, default="max_bytes"
        Name of the parameter that holds the budget, quoted in the error message
        (e.g. ``"max_kernel_bytes"`` for :class:`~skntk.HybridNTKClassifier`).
    held_bytes : int, default=0
        Memory already held while this kernel is built (for example other kernels
        kept alive beside it), which the budget covers too.
    held_what : str, default="other arrays"
        What holds ``held_bytes``, for the error message.

    Returns
    -------
    n_bytes : int
        The estimated bytes, kernel plus ``extra_bytes`` plus ``held_bytes``, when
        within the budget.

    Raises
    ------
    ValueError
        If the estimate exceeds ``max_bytes``; the message gives the size.
    """
    if max_bytes is None:
        max_bytes = DEFAULT_MAX_KERNEL_BYTES
    kernel = kernel_nbytes(n1, n2, dtype, per_logit_classes)
    total = kernel + int(extra_bytes) + int(held_bytes)
    if total > max_bytes:
        shape = (n1, n2) if per_logit_classes is None else (
            n1, n2, per_logit_classes, per_logit_classes)
        detail = _format_bytes(kernel)
        if extra_bytes:
            detail += f" for the kernel itself plus {_format_bytes(extra_bytes)} working memory"
        if held_bytes:
            detail += f", plus {_format_bytes(held_bytes)} held at the same time by {held_what}"
        raise ValueError(
            f"The {what} of shape {shape} ({np.dtype(dtype).name}) needs about "
            f"{_format_bytes(total)} ({detail}), more than the budget `{budget_name}` = "
            f"{_format_bytes(max_bytes)}. To fit, {fix_hint}; or raise `{budget_name}`.")
    return total


def _tiles_alive(layer_sizes):
    """Row tiles (``b x n2`` matrices) alive at once while one tile is computed: XLA
    keeps the two Gram matrices of every layer until they are combined, so
    ``2 L - 1`` for ``L`` layers (measured with ``memory_analysis`` of the compiled
    tile), and at least 3."""
    return max(3, 2 * (len(layer_sizes) - 1) - 1)


def _working_set_bytes(layer_sizes, n1, n2, block, symmetric, per_logit, itemsize):
    """Peak memory beside the output, following the formula in :func:`empirical_ntk`."""
    rows = min(block, n1)
    width = feature_width(layer_sizes, per_logit)
    c2 = layer_sizes[-1] ** 2 if per_logit else 1
    feature_rows = n2 + (0 if symmetric else rows)
    # Features are stored once; their forward/backward temporaries are about as large;
    # the tile and the Gram matrices of every layer are alive at the same time.
    return itemsize * (2 * feature_rows * width
                       + _tiles_alive(layer_sizes) * rows * n2 * c2)


# --------------------------------------------------------------------------------------
# Layer-wise kernel
# --------------------------------------------------------------------------------------

@partial(jax.jit, static_argnames=("parameterization", "activation"))
def ntk_gram(params, X, parameterization="standard", activation="relu"):
    """Traced empirical NTK of a batch with itself, in one jitted call.

    The fast path for small fixed batches (e.g. a monitor subset of a few hundred
    samples evaluated every epoch): no blocking, no budget check, no host
    synchronisation. Compiled once per shape and dtype of ``X``.

    Parameters
    ----------
    params : sequence of (W, b)
        Network parameters, ``W`` of shape ``(fan_in, fan_out)``, ``b`` of shape
        ``(fan_out,)``.
    X : array of shape (m, n_features)
        Inputs.
    parameterization : {"standard", "ntk"}, default="standard"
        Static. The coordinates of the Jacobian, as in :func:`empirical_ntk`.
    activation : {"relu", "tanh", "erf", "gelu", "identity"}, default="relu"
        Static. The hidden layers' activation, as in :func:`empirical_ntk`.

    Returns
    -------
    K : jax.Array of shape (m, m)
        ``K[i, j] = Σ_c ⟨J_c(x_i), J_c(x_j)⟩``, in the floating dtype of ``params`` and
        ``X`` (float32 unless the caller enabled x64 and passes float64).

    Notes
    -----
    Computed layer-wise as in :func:`empirical_ntk` (Jacot et al., NeurIPS 2018;
    Novak et al., ICML 2022). Peak memory is about
    ``itemsize · ((1 + T) · m² + 2 · m · F)`` bytes with ``F`` and ``T`` as in
    :func:`empirical_ntk`; callers check it with :func:`check_kernel_budget`.
    """
    scales = layer_scales(sizes_of(params), check_parameterization(parameterization),
                          activation)
    return kernel(params, X, None, False, scales)


_kernel_jit = jax.jit(kernel, static_argnames=("per_logit", "scales"))
_features_jit = jax.jit(layer_features, static_argnames=("per_logit", "activation"))


@partial(jax.jit, static_argnames=("block", "symmetric", "per_logit", "mesh", "scales"),
         donate_argnums=0)
def _fill_rows(K, params, X1, features2, start, *, block, symmetric, per_logit, mesh=None,
               scales=None):
    """Write rows ``start:start + block`` of ``K`` in place (``K`` is donated). With a
    ``mesh`` whose size divides ``block``, the block's rows are split over its devices."""
    if symmetric:
        features1 = jax.tree.map(
            lambda a: lax.dynamic_slice_in_dim(a, start, block, axis=0), features2)
    else:
        features1 = layer_features(
            params, lax.dynamic_slice_in_dim(X1, start, block, axis=0), per_logit,
            activation_of(scales))
    if mesh is not None and block % mesh_size(mesh) == 0:
        features1 = jax.tree.map(lambda a: constrain_rows(a, mesh), features1)
    tile = combine_features(features1, features2, params[-1][0].shape[1], per_logit, scales)
    return lax.dynamic_update_slice_in_dim(K, tile, start, axis=0)


IMPLEMENTATIONS = ("layerwise", "jacobian", "matrix_free")
"""Values of the ``implementation`` argument of :func:`empirical_ntk`."""


def _check_implementation(implementation, per_logit, mesh):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {IMPLEMENTATIONS}, got {implementation!r}. "
            f"Use 'layerwise' (the default) unless you are checking one against another.")
    if per_logit and implementation == "matrix_free":
        raise ValueError(
            "`implementation='matrix_free'` computes the traced kernel only; pass "
            "per_logit=False, or use implementation='layerwise' or 'jacobian' for the "
            "per-logit kernel.")
    if mesh is not None and implementation != "layerwise":
        raise ValueError(
            f"`mesh` splits the row blocks of implementation='layerwise' only; pass "
            f"mesh=None with implementation={implementation!r}.")
    return implementation


def empirical_ntk(params, X1, X2=None, *, block_size=512, per_logit=False, max_bytes=None,
                  mesh=None, parameterization="standard", implementation="layerwise",
                  activation="relu"):
    """Empirical neural tangent kernel of the MLP.

    Parameters
    ----------
    params : sequence of (W, b)
        Network parameters, ``W`` of shape ``(fan_in, fan_out)``, ``b`` of shape
        ``(fan_out,)``; ``list(zip(clf.coefs_, clf.intercepts_))`` works.
    X1 : array-like of shape (n1, n_features)
        Row inputs.
    X2 : array-like of shape (n2, n_features), default=None
        Column inputs; ``None`` means ``X1`` (the layer factors are then computed once).
    block_size : int, default=512
        Rows of ``X1`` processed at a time: bounds the working memory (see Notes).
        All blocks have this size (the last one overlaps its predecessor), so one
        block shape compiles.
    per_logit : bool, default=False
        If True, return the full kernel ``K[i, j, c, c'] = ⟨J_c(x_i), J_{c'}(x'_j)⟩``
        instead of its trace over the logits. Meant for analysis: ``C²`` times the
        memory.
    max_bytes : int, float or None, default=None
        Memory budget in bytes for the output plus the working set;
        ``None`` means :data:`DEFAULT_MAX_KERNEL_BYTES` (2 GiB).
    mesh : jax.sharding.Mesh or None, default=None
        Devices over which the rows of each row block are split (data-parallel), when
        their number divides ``block_size`` and ``n1 > block_size``; the parameters and
        inputs should then be replicated on the mesh. ``None``: one device.
    parameterization : {"standard", "ntk"}, default="standard"
        The coordinates ``θ`` of the Jacobian. ``"standard"``: the weights and biases
        ``(W, b)`` of ``params`` themselves. ``"ntk"``: the NTK parameterisation
        (Jacot et al., NeurIPS 2018; Lee et al., NeurIPS 2019, eq. (1);
        neural-tangents' ``stax.Dense(parameterization="ntk")``), in which layer
        ``l`` computes ``z_l = (σ_w/√n_{l-1}) h_{l-1} ω_l + σ_b β_l`` and ``θ =
        (ω, β)``; ``params`` are then the effective ``W_l = (σ_w/√n_{l-1}) ω_l``,
        ``b_l = σ_b β_l``, with ``σ_w = √2`` and ``σ_b = 0.1``
        (:mod:`skntk._parameterization`). The kernel is ``J D Jᵀ`` with ``J`` the
        Jacobian in ``(W, b)`` and ``D`` the diagonal ``σ_w²/n_{l-1}`` on the weights
        and ``σ_b²`` on the bias of layer ``l``. It is what
        ``HybridNTKClassifier(parameterization="ntk")`` computes and trains with.
    activation : {"relu", "tanh", "erf", "gelu", "identity"}, default="relu"
        The hidden layers' activation ``φ`` (the estimators' ``activation``); the
        back-propagated signals carry ``φ'(z_l)`` (see Notes). ``"gelu"`` is the
        exact ``z Φ(z)``.
    implementation : {"layerwise", "jacobian", "matrix_free"}, default="layerwise"
        How the kernel is computed; all three give the same kernel up to float
        rounding (like neural-tangents' ``empirical_ntk_fn(implementation=...)``).

        - ``"layerwise"``: Gram matrices of the per-layer factors (Notes), blocks of
          ``block_size`` rows; the fastest, and the one skntk uses. Neural-tangents
          calls this kind of computation "structured derivatives" (Novak et al., ICML
          2022, section 3).
        - ``"jacobian"``: explicit per-sample Jacobians (``jax.vmap(jax.jacrev(...))``)
          contracted over the parameters, all rows at once: "Jacobian contraction"
          (Novak et al., ICML 2022, section 2). Memory ``O((n1 + n2) · C · P)`` for
          ``P`` parameters; a reference for the others.
        - ``"matrix_free"``: ``K(X1, X2) @ E`` for blocks ``E`` of ``block_size``
          columns of the identity, by the kernel-vector product of
          :func:`ntk_vector_product`, which never forms a per-sample Jacobian nor a
          kernel tile larger than the output. The traced kernel only
          (``per_logit=False``).

        ``mesh`` applies to ``"layerwise"`` only.

    Returns
    -------
    K : jax.Array of shape (n1, n2), or (n1, n2, C, C) if ``per_logit``
        ``K[i, j] = Σ_c ⟨J_c(x_i; θ), J_c(x'_j; θ)⟩`` with ``J = ∂f/∂θ`` over all
        weights and biases (in the coordinates of ``parameterization``). Its dtype is the floating dtype of ``params`` and the inputs:
        float32, or float64 when the caller passes float64 arrays under
        ``jax.enable_x64(True)``. Entries grow like the square of the input scale, so
        finite inputs far beyond unit scale (about 1e19 in float32) can still overflow
        to ``inf``: standardise the inputs.

    Raises
    ------
    ValueError
        If the estimated peak memory exceeds ``max_bytes`` (the message gives the size),
        if the inputs do not match the network, if ``block_size`` is not positive, if
        ``params``, ``X1`` or ``X2`` hold NaN or infinite values (including values
        beyond the float32 range, which overflow when cast), or if ``implementation``
        is unknown or does not support ``per_logit`` or ``mesh``.
    TypeError
        If ``X1`` or ``X2`` is a scipy sparse matrix (convert it with ``.toarray()``)
        or ``params`` is not a sequence of ``(W, b)`` pairs.

    See Also
    --------
    ntk_gram : The jitted unblocked kernel of one small batch with itself.
    ntk_vector_product : ``K @ V`` without forming ``K``.
    empirical_ntk_reference : Slow explicit-Jacobian version for any network.

    Notes
    -----
    With ``h_0 = x``, ``z_l = h_{l-1} W_l + b_l``, ``h_l = φ(z_l)``, ``f = z_L`` and
    ``δ_{l,c} = ∂f_c/∂z_l``, the gradient with respect to ``W_l`` is the outer product
    ``h_{l-1} ⊗ δ_{l,c}``, so (Jacot et al., NeurIPS 2018; for the structured
    computation, Novak et al., ICML 2022, "Fast finite width neural tangent kernel")

        K(x, x') = Σ_l (⟨h_{l-1}(x), h_{l-1}(x')⟩ + 1) · Σ_c ⟨δ_{l,c}(x), δ_{l,c}(x')⟩.

    Under ``parameterization="ntk"`` the Jacobian in ``(ω_l, β_l)`` is that in
    ``(W_l, b_l)`` times ``σ_w/√n_{l-1}`` and ``σ_b``, so the first factor becomes
    ``(σ_w²/n_{l-1}) ⟨h_{l-1}(x), h_{l-1}(x')⟩ + σ_b²``; nothing else changes.
    ``δ`` is back-propagated for all ``C`` outputs at once. For the output layer the
    second factor is ``C``; for the last hidden layer it collapses to
    ``Σ_j m_j(x) m_j(x') ‖W_L[j]‖²`` (``m = φ'(z_{L-1})``, the ReLU mask for ReLU).

    Cost: ``O(n1 · n2 · F)`` time with ``F = Σ_l fan_in_l + C · Σ_{l < L-2} w_l +
    w_{L-2}`` floats per sample (hidden widths ``w``; ``F = Σ_l fan_in_l + C · Σ_l w_l``
    for ``per_logit``), plus ``O((n1 + n2) · C · P)`` to back-propagate.

    Peak memory, in bytes, with ``b = min(block_size, n1)``, ``s = C²`` if
    ``per_logit`` else 1, ``n1' = 0`` if ``X2`` is None else ``b`` and
    ``T = max(3, 2 L - 1)`` for ``L`` layers::

        itemsize · (n1 · n2 · s + 2 · (n2 + n1') · F + T · b · n2 · s)

    (output, stored layer factors of ``X2`` and of one row block with their
    temporaries, one row tile and the Gram matrices of every layer, which are alive
    together until they are combined). This estimate is checked
    against ``max_bytes`` before anything is allocated. The output is updated in place
    block by block (its buffer is donated), so no second copy of it is made. The
    working memory of ``"jacobian"`` is ``2 · itemsize · (n1 + n2') · C · P``
    (``n2' = 0`` when ``X2`` is None), that of ``"matrix_free"``
    ``itemsize · (k · Σ_l a_l f_l + 3 · k · Σ_l (k · a_l + f_l))`` with
    ``k = min(block_size, n2)`` and the factor widths ``a_l``, ``f_l`` of
    :func:`ntk_vector_product`; both are checked the same way.
    """
    check_parameterization(parameterization)
    params = check_params(params)
    return _empirical_ntk(params, X1, X2, block_size=block_size, per_logit=per_logit,
                          max_bytes=max_bytes, mesh=mesh,
                          scales=layer_scales(sizes_of(params), parameterization, activation),
                          implementation=implementation)


def _jacobian_bytes(layer_sizes, n1, n2, symmetric, itemsize):
    """Per-sample Jacobians of the rows and columns, plus as much for the contraction."""
    n_params = sum(a * b + b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    rows = n1 + (0 if symmetric else n2)
    return 2 * itemsize * rows * layer_sizes[-1] * n_params


def _empirical_ntk(params, X1, X2=None, *, block_size=512, per_logit=False, max_bytes=None,
                   mesh=None, scales=None, implementation="layerwise"):
    """:func:`empirical_ntk` with the per-layer scales ``D`` of the parameterisation
    given directly (``None``: standard); see :mod:`skntk._parameterization`. A model in
    place of the scales (:mod:`skntk._network`) goes to :func:`model_ntk` (its Jacobian
    contraction, ``block_size`` and ``mesh`` left to it)."""
    if not is_mlp(scales):
        return model_ntk(scales, params, X1, X2, per_logit=per_logit, max_bytes=max_bytes)
    _check_implementation(implementation, per_logit, mesh)
    block_size = check_positive_int(block_size, "block_size")
    params, X1, X2, dtype = prepare_inputs(params, X1, X2)
    symmetric = X2 is None
    n1 = X1.shape[0]
    n2 = n1 if symmetric else X2.shape[0]
    layer_sizes = sizes_of(params)
    n_classes = layer_sizes[-1]
    itemsize = np.dtype(dtype).itemsize
    if implementation == "jacobian":
        extra = _jacobian_bytes(layer_sizes, n1, n2, symmetric, itemsize)
    elif implementation == "matrix_free":
        extra = product_bytes(layer_sizes, min(block_size, n2), min(block_size, n2),
                              itemsize)
    else:
        extra = _working_set_bytes(layer_sizes, n1, n2, block_size, symmetric, per_logit,
                                   itemsize)
    check_kernel_budget(n1, n2, dtype, max_bytes, what="kernel",
                        per_logit_classes=n_classes if per_logit else None,
                        extra_bytes=extra)

    if implementation == "jacobian":
        return _jacobian_kernel(params, X1, X2, per_logit=per_logit, scales=scales)
    if implementation == "matrix_free":
        return _kernel_from_products(params, X1, X1 if symmetric else X2, block_size,
                                     scales)
    if n1 <= block_size:
        if symmetric and not per_logit and scales is None:
            return ntk_gram(params, X1)
        return _kernel_jit(params, X1, X2, per_logit=per_logit, scales=scales)

    features2 = _features_jit(params, X1 if symmetric else X2, per_logit=per_logit,
                              activation=activation_of(scales))
    shape = (n1, n2, n_classes, n_classes) if per_logit else (n1, n2)
    K = jnp.zeros(shape, dtype)
    for start in block_starts(n1, block_size):
        K = _fill_rows(K, params, X1, features2, start, block=block_size,
                       symmetric=symmetric, per_logit=per_logit, mesh=mesh, scales=scales)
    return K


def _kernel_from_products(params, X1, X2, block_size, scales):
    """``K(X1, X2)`` as ``K @ E`` for blocks ``E`` of ``k = min(block_size, n2)``
    columns of the identity (one shape: the last block's columns past ``n2`` are zero
    and cut off)."""
    n2 = X2.shape[0]
    k = min(block_size, n2)
    columns = [_product(params, X1, jnp.eye(n2, k, k=-start, dtype=X1.dtype), X2,
                        block_size, scales)
               for start in range(0, n2, k)]
    return jnp.concatenate(columns, axis=1)[:, :n2]


@partial(jax.jit, static_argnames=("per_logit", "scales"))
def _jacobian_kernel(params, X1, X2, per_logit, scales=None):
    """The MLP's kernel by :func:`skntk._model_kernel.jacobian_contraction` in the
    trained coordinates ``(ω, β) = D^{-1/2} (W, b)`` of the parameterisation, so that
    it is ``J D Jᵀ``."""
    def apply(theta, X):
        return logits(scale_params(theta, scales, 0.5), X, activation_of(scales))

    return model_kernel.jacobian_contraction(apply, scale_params(params, scales, -0.5), X1,
                                             X2, per_logit)


# --------------------------------------------------------------------------------------
# Reference: explicit Jacobians, any network
# --------------------------------------------------------------------------------------

def empirical_ntk_reference(apply_fn, params, X1, X2=None, *, per_logit=False):
    """Empirical NTK of any network from explicit per-sample Jacobians (slow).

    A generic fallback and a test reference: the Jacobian of every sample is
    materialised with ``jax.vmap(jax.jacrev(...))`` and contracted with ``einsum``.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, X) -> logits`` of shape ``(n, C)``; must be hashable (it is a
        static argument of a jitted function; a module-level function is).
    params : pytree
        Parameters of ``apply_fn``.
    X1 : array-like of shape (n1, n_features)
        Row inputs.
    X2 : array-like of shape (n2, n_features), default=None
        Column inputs; ``None`` means ``X1``.
    per_logit : bool, default=False
        Return the ``(n1, n2, C, C)`` kernel ``⟨J_c(x_i), J_{c'}(x'_j)⟩`` instead of
        its trace over the logits.

    Returns
    -------
    K : jax.Array of shape (n1, n2), or (n1, n2, C, C) if ``per_logit``
        ``Σ_c ⟨J_c(x_i), J_c(x'_j)⟩`` (Jacot et al., NeurIPS 2018), in the dtype
        JAX gives ``apply_fn``'s output.

    Notes
    -----
    Memory ``O((n1 + n2) · C · P)`` for ``P`` parameters and time
    ``O(n1 · n2 · C · P)`` (``C²`` for ``per_logit``), with no memory check: use
    :func:`empirical_ntk` for the MLP, and :func:`model_ntk` for any network in blocks
    with a memory check.
    """
    X1 = jnp.asarray(X1)
    X2 = None if X2 is None else jnp.asarray(X2)
    return model_kernel.jacobian_tile(apply_fn, params, X1, X2, per_logit=per_logit)


_MODEL_FIX_HINT = (
    "use fewer samples, a smaller `block_size`, or `skntk.ntk.model_ntk_vector_product`, "
    "which multiplies by the kernel without forming it")


def _model_inputs(params, arrays):
    """Inputs of a model kernel as jax arrays in their common floating dtype (with that
    of ``params``), checked as those of the MLP's kernels (sparse, shape, finite)."""
    for name, X in arrays:
        refuse_sparse(X, name)
    arrays = [(name, None if X is None else jnp.asarray(X)) for name, X in arrays]
    dtype = float_dtype(*jax.tree.leaves(params), *(X for _, X in arrays if X is not None))
    arrays = [(name, None if X is None else X.astype(dtype)) for name, X in arrays]
    n_features = arrays[0][1].shape[1:] if arrays[0][1].ndim >= 2 else None
    for name, X in arrays:
        if X is not None and (X.ndim < 2 or X.shape[1:] != n_features):
            raise ValueError(
                f"`{name}` must have shape (n_samples, *{n_features}) like the first input, "
                f"got shape {X.shape}.")
    check_finite([], arrays)
    return [X for _, X in arrays], dtype


def model_ntk(apply_fn, params, X1, X2=None, *, block_size=64, per_logit=False,
              max_bytes=None, implementation="jacobian"):
    """Empirical NTK of any network ``apply_fn(params, X)``, in blocks, memory checked.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, X) -> outputs`` of shape ``(n, C)``, pure and hashable (a
        module-level function): a static argument of the compiled programs.
    params : pytree of arrays
        Parameters of ``apply_fn``; the kernel is ``J Jᵀ`` in these coordinates.
    X1 : array-like of shape (n1, ...)
        Row inputs.
    X2 : array-like of shape (n2, ...), default=None
        Column inputs; ``None`` means ``X1``.
    block_size : int, default=64
        Rows (and columns) per block: bounds the working memory.
    per_logit : bool, default=False
        Return the ``(n1, n2, C, C)`` kernel instead of its trace over the outputs.
    max_bytes : int, float or None, default=None
        Budget in bytes for the output plus the working memory of one block
        (:func:`check_kernel_budget`); ``None``: :data:`DEFAULT_MAX_KERNEL_BYTES`.
    implementation : {"jacobian", "matrix_free"}, default="jacobian"
        ``"jacobian"``: tiles contracted from the per-sample Jacobians of a row block
        and a column block (``2 · b · C · P`` floats of working memory for ``P``
        parameters). ``"matrix_free"``: ``K`` applied to blocks of ``b`` columns of the
        identity by :func:`model_ntk_vector_product` (no Jacobian; traced kernel only).

    Returns
    -------
    K : jax.Array of shape (n1, n2), or (n1, n2, C, C) if ``per_logit``
        ``Σ_c ⟨J_c(x_i), J_c(x'_j)⟩`` (Jacot et al., NeurIPS 2018), in the common
        floating dtype of ``params`` and the inputs. On the MLP it equals
        :func:`empirical_ntk` (standard parameterisation) to rounding.

    Raises
    ------
    ValueError
        If the kernel and the working memory of its compiled block, read from XLA's
        memory analysis before anything runs, exceed ``max_bytes``; if the inputs hold
        NaN or infinite values or their shapes differ past the first axis; for an
        unknown ``implementation`` or ``per_logit`` with ``"matrix_free"``.
    TypeError
        If an input is a scipy sparse matrix.

    Notes
    -----
    The generic path (:mod:`skntk._model_kernel`; the "Jacobian contraction" and
    "NTK-vector products" of Novak, Sohl-Dickstein and Schoenholz, ICML 2022): time
    ``O(n1 · n2 · C · P)`` for ``"jacobian"`` and ``O((n1 + n2) · n2 · C)`` passes
    through the network for ``"matrix_free"``.
    """
    if implementation not in ("jacobian", "matrix_free"):
        raise ValueError(
            f"`implementation` must be 'jacobian' or 'matrix_free' for a model given by "
            f"`apply_fn`, got {implementation!r} ('layerwise' is the MLP's, in "
            f"`empirical_ntk`).")
    if per_logit and implementation == "matrix_free":
        raise ValueError("`implementation='matrix_free'` computes the traced kernel only; "
                         "pass per_logit=False, or use implementation='jacobian'.")
    block_size = check_positive_int(block_size, "block_size")
    (X1, X2), dtype = _model_inputs(params, [("X1", X1), ("X2", X2)])
    symmetric = X2 is None
    X2 = X1 if symmetric else X2
    n1, n2 = X1.shape[0], X2.shape[0]
    n_outputs = jax.eval_shape(apply_fn, params, X1[:1]).shape[1]
    if implementation == "jacobian":
        extra, tile = model_kernel.tile_plan(apply_fn, params, X1, X2, block_size, per_logit)
    else:
        k = min(block_size, n2)
        extra, plan = model_kernel.product_plan(apply_fn, params, X1,
                                                jnp.zeros((n2, k), dtype), X2, block_size)
    check_kernel_budget(n1, n2, dtype, max_bytes, what="kernel",
                        per_logit_classes=n_outputs if per_logit else None,
                        extra_bytes=extra, fix_hint=_MODEL_FIX_HINT)
    if implementation == "jacobian":
        return model_kernel.kernel_tiles(tile, params, X1, None if symmetric else X2,
                                         block_size, n_outputs, per_logit)
    pull, push, X2_blocks, _, X_blocks = plan
    columns = []
    for start in range(0, n2, k):
        identity = row_blocks(jnp.eye(n2, k, k=-start, dtype=dtype), X2_blocks.shape[1])
        columns.append(model_kernel.product((pull, push, X2_blocks, identity, X_blocks),
                                            params, n1))
    return jnp.concatenate(columns, axis=1)[:, :n2]


def model_ntk_vector_product(apply_fn, params, X, V, *, X2=None, block_size=256,
                             max_bytes=None):
    """Traced NTK of any network times a vector or matrix, ``K(X, X2) @ V``, without
    forming ``K`` or any Jacobian.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, X) -> outputs`` of shape ``(n, C)``, pure and hashable.
    params : pytree of arrays
        Parameters of ``apply_fn``.
    X : array-like of shape (n1, ...)
        Row inputs.
    V : array-like of shape (n2,) or (n2, k)
        Vector(s) to multiply.
    X2 : array-like of shape (n2, ...), default=None
        Column inputs; ``None`` means ``X``.
    block_size : int, default=256
        Rows of ``X`` and ``X2`` per pass through the network.
    max_bytes : int, float or None, default=None
        Budget in bytes for the working memory (``k · C · P`` floats of pulled-back
        vectors and the temporaries of one block, from XLA's memory analysis);
        ``None``: :data:`DEFAULT_MAX_KERNEL_BYTES`.

    Returns
    -------
    KV : jax.Array of shape (n1,) or (n1, k)
        As :func:`ntk_vector_product` gives for the MLP, in the floating dtype of the
        inputs.

    Raises
    ------
    ValueError
        If the working memory exceeds ``max_bytes``, ``V`` has the wrong number of
        rows, or an input holds NaN or infinite values.
    TypeError
        If an input is a scipy sparse matrix.

    Notes
    -----
    ``G_{j,c} = J_c(X2)ᵀ V[:, j]`` by vector-Jacobian products over blocks of ``X2``,
    then ``(K V)[:, j] = Σ_c J_c(X) G_{j,c}`` by Jacobian-vector products over blocks of
    ``X``: ``k · C`` passes each way, ``(n1 + n2) · k · C`` sample-passes in all.
    """
    block_size = check_positive_int(block_size, "block_size")
    (X, X2), dtype = _model_inputs(params, [("X", X), ("X2", X2)])
    X2 = X if X2 is None else X2
    V = prepare_vectors(V, X2.shape[0], dtype)
    vector = V.ndim == 1
    V2 = V[:, None] if vector else V
    extra, plan = model_kernel.product_plan(apply_fn, params, X, V2, X2, block_size)
    check_kernel_budget(X.shape[0], V2.shape[1], dtype, max_bytes,
                        what="kernel-vector product", extra_bytes=extra,
                        fix_hint="use a smaller `block_size` or fewer columns in `V`")
    out = model_kernel.product(plan, params, X.shape[0])
    return out[:, 0] if vector else out


# --------------------------------------------------------------------------------------
# Kernel-vector products
# --------------------------------------------------------------------------------------

def ntk_vector_product(params, X, V, *, X2=None, block_size=512,
                       parameterization="standard", activation="relu"):
    """Traced NTK times a vector or matrix, ``K(X, X2) @ V``, without forming ``K``.

    Parameters
    ----------
    params : sequence of (W, b)
        Network parameters, ``W`` of shape ``(fan_in, fan_out)``.
    X : array-like of shape (n1, n_features)
        Row inputs.
    V : array-like of shape (n2,) or (n2, k)
        Vector(s) to multiply.
    X2 : array-like of shape (n2, n_features), default=None
        Column inputs; ``None`` means ``X``.
    block_size : int, default=512
        Rows processed at a time (at most the number of samples); the last block is
        zero-padded so one block shape compiles.
    parameterization : {"standard", "ntk"}, default="standard"
        The coordinates of the Jacobian, as in :func:`empirical_ntk`: ``"ntk"``
        multiplies by ``J D Jᵀ``.
    activation : {"relu", "tanh", "erf", "gelu", "identity"}, default="relu"
        The hidden layers' activation, as in :func:`empirical_ntk`.

    Returns
    -------
    KV : jax.Array of shape (n1,) or (n1, k)
        ``K(X, X2) @ V`` with ``K`` the traced kernel of :func:`empirical_ntk` (same
        ``parameterization``), in the floating dtype of the inputs.

    Raises
    ------
    ValueError
        If ``V`` has the wrong number of rows or more than two axes, the inputs do
        not match the network, ``block_size`` is not a positive integer, or
        ``params``, ``X``, ``X2`` or ``V`` hold NaN or infinite values.
    TypeError
        If ``X``, ``X2`` or ``V`` is a scipy sparse matrix (convert it with
        ``.toarray()``) or ``params`` is not a sequence of ``(W, b)`` pairs.

    Notes
    -----
    Layer by layer: with the kernel written as ``Σ_l (P_l P_lᵀ) ∘ (Q_l Q_lᵀ)`` of the
    layer inputs (with a column of ones for the bias) and the back-propagated signals
    (see :func:`empirical_ntk`), ``((P Pᵀ) ∘ (Q Qᵀ)) v`` is the row-wise sum of
    ``(P M) ∘ Q`` with ``M = Pᵀ diag(v) Q``, accumulated over blocks of ``X2`` and
    applied over blocks of ``X`` (Jacot et al., NeurIPS 2018, for the kernel; the
    Hadamard-product identity is standard, e.g. Horn and Johnson, *Topics in Matrix
    Analysis*, Lemma 5.1.5). With ``a_l <= f_l`` the widths of the two factors of
    layer ``l``: time ``4 · (n1 + n2) / 2 · k · Σ_l a_l f_l`` flops plus one forward
    and ``C``-logit backward pass over ``X`` and ``X2``; memory
    ``itemsize · (k · Σ_l a_l f_l + 3 · b · Σ_l (k · a_l + f_l))`` with
    ``b = block_size``, never ``O(n1 · n2)``. The kernel phase's matrix-free solver
    runs the same product (:mod:`skntk._matrix_free`).
    """
    check_parameterization(parameterization)
    params = check_params(params)
    return _ntk_vector_product(params, X, V, X2=X2, block_size=block_size,
                               scales=layer_scales(sizes_of(params), parameterization,
                                                   activation))


# --------------------------------------------------------------------------------------
# Kernel statistics
# --------------------------------------------------------------------------------------

def _namespace(*arrays):
    """numpy for numpy inputs (float64 kept, Python floats out), jax.numpy otherwise."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _result(xp, value):
    return float(value) if xp is np else value


def frobenius_distance(K1, K2):
    """Frobenius norm of the difference of two kernels, ``‖K1 − K2‖_F``.

    Parameters
    ----------
    K1, K2 : array of the same shape
        Kernel matrices (numpy or jax; jax inputs may be traced under ``jit``).

    Returns
    -------
    distance : float or 0-d jax.Array
        A Python float for numpy inputs, a 0-d jax array when either input is a jax array.
    """
    xp = _namespace(K1, K2)
    K1, K2 = xp.asarray(K1), xp.asarray(K2)
    return _result(xp, xp.sqrt(xp.sum((K1 - K2) ** 2)))


def kernel_distance(K1, K2):
    """Kernel distance ``1 − ⟨K1, K2⟩_F / (‖K1‖_F ‖K2‖_F)``.

    Zero for kernels equal up to a positive scale, one for orthogonal kernels
    (Fort et al., NeurIPS 2020, "Deep learning versus kernel learning: an empirical
    study of loss landscape geometry and the time evolution of the neural tangent
    kernel"). For positive semi-definite kernels, as every empirical NTK is,
    ``⟨K1, K2⟩_F = tr(K1 K2) >= 0``, so the distance lies in ``[0, 1]``.

    Parameters
    ----------
    K1, K2 : array of the same shape
        Kernel matrices (numpy or jax; jax inputs may be traced under ``jit``).

    Returns
    -------
    distance : float or 0-d jax.Array
        In ``[0, 1]`` for positive semi-definite kernels, up to round-off (a few units
        of the float precision either side). Other matrices can have a negative inner
        product, which gives values up to 2 (2 for ``K2 = -c K1``, ``c > 0``); the
        value is not clipped. NaN if either kernel is zero. A Python float for numpy
        inputs, a 0-d jax array when either input is a jax array.
    """
    xp = _namespace(K1, K2)
    K1, K2 = xp.asarray(K1), xp.asarray(K2)
    inner = xp.sum(K1 * K2)
    norms = xp.sqrt(xp.sum(K1 * K1)) * xp.sqrt(xp.sum(K2 * K2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _result(xp, 1 - inner / norms)


def kernel_target_alignment(K, Y):
    """Kernel-target alignment ``⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F)``.

    Cristianini, Shawe-Taylor, Elisseeff and Kandola, NeurIPS 2001, "On kernel-target
    alignment".

    Parameters
    ----------
    K : array of shape (n, n)
        Kernel matrix (numpy or jax; jax inputs may be traced under ``jit``).
    Y : array of shape (n, C) or (n,)
        One-hot (or any real) targets, or class labels; labels are one-hot encoded,
        i.e. ``YYᵀ[i, j] = 1`` when ``y_i == y_j`` and 0 otherwise.

    Returns
    -------
    alignment : float or 0-d jax.Array
        In ``[-1, 1]``. A Python float for numpy inputs, a 0-d jax array when either
        input is a jax array.

    Raises
    ------
    ValueError
        If ``K`` is not square or ``Y`` has more than two axes or a number of rows
        other than ``K``'s; if ``K`` or ``Y`` holds NaN or infinite values; or if ``K``
        or ``Y`` is all zeros, for which the alignment is undefined (0/0), as
        :func:`centered_kernel_alignment` raises for a centred kernel or target that
        is zero. These value checks synchronise with the device for jax inputs and are
        skipped under tracing, where such inputs give NaN.
    """
    xp = _namespace(K, Y)
    refuse_sparse(K, "K")
    refuse_sparse(Y, "Y")
    K, Y = xp.asarray(K), xp.asarray(Y)
    if (K.ndim != 2 or Y.ndim not in (1, 2) or Y.shape[0] != K.shape[0]
            or K.shape[0] != K.shape[1]):
        raise ValueError(
            f"`K` must be square and `Y` of shape ({K.shape[0]},) or ({K.shape[0]}, C); "
            f"got K of shape {K.shape} and Y of shape {Y.shape}.")
    if not xp.issubdtype(K.dtype, xp.floating):
        K = K.astype(xp.result_type(float))
    if Y.ndim == 2:
        Y = Y.astype(K.dtype)
    concrete = is_concrete(K) and is_concrete(Y)
    if concrete:
        if not bool(xp.all(xp.isfinite(K))):
            raise ValueError(
                "`K` contains NaN or infinite values: the network has diverged or its "
                "inputs are far beyond unit scale. Pass a finite kernel.")
        if Y.ndim == 2 and not bool(xp.all(xp.isfinite(Y))):
            raise ValueError(
                "`Y` contains NaN or infinite values. Pass finite labels or targets.")
    with np.errstate(over="ignore", invalid="ignore"):
        K_norm = xp.sqrt(xp.sum(K * K))
        if Y.ndim == 1:
            same = (Y[:, None] == Y[None, :]).astype(K.dtype)
            inner, target_norm = xp.sum(K * same), xp.sqrt(xp.sum(same))
            Y_norm = target_norm
        else:
            # ⟨K, YYᵀ⟩ = tr(Yᵀ K Y) and ‖YYᵀ‖_F = ‖YᵀY‖_F: never form the n x n target.
            inner = xp.sum(Y * (K @ Y))
            target_norm = xp.sqrt(xp.sum((Y.T @ Y) ** 2))
            Y_norm = xp.sqrt(xp.sum(Y * Y))
    if concrete:
        if float(K_norm) == 0 or not bool(xp.isfinite(K_norm)):
            problem = ("is all zeros" if float(K_norm) == 0 else
                       f"has entries too large for the Frobenius norm in {K.dtype}")
            raise ValueError(
                f"`K` {problem}, so its alignment with the targets is undefined. Pass a "
                f"non-zero kernel (for a too large one, standardise the inputs or compute "
                f"the kernel in float64).")
        if float(Y_norm) == 0 or float(target_norm) == 0:
            raise ValueError(
                "`Y` is all zeros (or too small for its Gram matrix to be non-zero in "
                f"{K.dtype}), so the alignment is undefined. Pass non-zero targets, or "
                "class labels as a 1-D array.")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _result(xp, inner / (K_norm * target_norm))


def _centre(xp, K):
    """``H K H`` with ``H = I − 11ᵀ/n``, without forming ``H``: subtract the column
    means and the row means, add back the grand mean."""
    return (K - xp.mean(K, axis=0, keepdims=True) - xp.mean(K, axis=1, keepdims=True)
            + xp.mean(K))


def _rounding_rtol(dtype, n):
    """Relative size below which a centred matrix is zero up to round-off: centring
    sums ``n`` terms per mean, whose rounding errors grow at most like ``n · eps``
    (measured: under ``n/10 · eps`` for constant float32 kernels of up to 4000 rows)."""
    return float(np.finfo(dtype).eps) * max(int(n), 256)


def centered_kernel_alignment(K, Y):
    """Centred kernel-target alignment ``⟨K_c, T_c⟩_F / (‖K_c‖_F ‖T_c‖_F)``.

    With ``T = YYᵀ`` and the centring ``M_c = H M H``, ``H = I − 11ᵀ/n`` (Cortes,
    Mohri and Rostamizadeh, JMLR 13, 2012, "Algorithms for learning kernels based on
    centered alignment", Definition 4). Centring removes the constant component that
    dominates the uncentred :func:`kernel_target_alignment` of kernels with large
    entries everywhere, such as the empirical NTK of a network with biases.

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric kernel matrix (numpy or jax; jax inputs may be traced under ``jit``).
        Integer kernels are cast to the default floating dtype (float64 for numpy);
        floating kernels keep their dtype.
    Y : array of shape (n,) or (n, C)
        Class labels, one-hot encoded over their unique values, i.e.
        ``YYᵀ[i, j] = 1`` when ``y_i == y_j`` and 0 otherwise; or one-hot (or any
        real) targets of shape ``(n, C)``, cast to the dtype of ``K``. A real-valued
        regression target must be passed as a column, shape ``(n, 1)``: a 1-D array
        is read as labels.

    Returns
    -------
    alignment : float or 0-d jax.Array
        In ``[-1, 1]`` (by Cauchy–Schwarz; clipped to it against round-off); 1 when
        ``K_c`` is a positive multiple of ``(YYᵀ)_c``, and unchanged by scaling ``K``
        by a positive factor or adding a constant to it. A Python float for numpy
        inputs, a 0-d jax array when either input is a jax array.

    Raises
    ------
    ValueError
        If ``K`` is not square, ``Y`` has more than two axes or a number of rows other
        than ``K``'s; if ``K`` or ``Y`` holds NaN or infinite values; or if the centred
        kernel or the centred target is zero up to round-off (relative Frobenius norm
        below ``max(n, 256) · eps`` of the dtype): a kernel constant over the samples,
        a single class, or targets equal on every row, for which the alignment is
        undefined. These value checks synchronise with the device for jax inputs and
        are skipped under tracing, where such inputs give NaN or a meaningless value.

    Notes
    -----
    ``H M H = M − 1 m_colᵀ − m_row 1ᵀ + m̄ 11ᵀ`` with the column means ``m_col``, row
    means ``m_row`` and grand mean ``m̄`` of ``M``, so ``H`` is never formed. For 2-D
    ``Y``, ``(YYᵀ)_c = Y_c Y_cᵀ`` with ``Y_c = H Y`` (column means removed), and
    ``⟨K_c, Y_c Y_cᵀ⟩_F = tr(Y_cᵀ K_c Y_c)``, ``‖Y_c Y_cᵀ‖_F = ‖Y_cᵀ Y_c‖_F``: the
    ``n x n`` target is never formed. Time ``O(n² C)``, memory ``O(n²)`` for the
    centred kernel (``O(n²)`` more for 1-D labels).
    """
    xp = _namespace(K, Y)
    refuse_sparse(K, "K")
    refuse_sparse(Y, "Y")
    K, Y = xp.asarray(K), xp.asarray(Y)
    if (K.ndim != 2 or K.shape[0] != K.shape[1] or Y.ndim not in (1, 2)
            or Y.shape[0] != K.shape[0]):
        n = K.shape[0] if K.ndim else "n"
        raise ValueError(
            f"`K` must be a square kernel of shape (n, n) and `Y` labels of shape (n,) "
            f"or targets of shape (n, C) for the same n samples; got K of shape "
            f"{K.shape} and Y of shape {Y.shape}. Pass the kernel of the samples with "
            f"themselves and one label or target row per sample, e.g. K of shape "
            f"({n}, {n}) with Y of shape ({n},).")
    if not xp.issubdtype(K.dtype, xp.floating):
        K = K.astype(xp.result_type(float))
    n = K.shape[0]
    K_c = _centre(xp, K)
    if Y.ndim == 1:
        same = (Y[:, None] == Y[None, :]).astype(K.dtype)
        T_c = _centre(xp, same)
        inner = xp.sum(K_c * T_c)
        target_norm = xp.sqrt(xp.sum(T_c * T_c))
        target_scale = xp.sqrt(xp.sum(same))
        single = "`Y` has a single class"
    else:
        Y = Y.astype(K.dtype)
        Y_c = Y - xp.mean(Y, axis=0, keepdims=True)
        inner = xp.sum(Y_c * (K_c @ Y_c))
        target_norm = xp.sqrt(xp.sum((Y_c.T @ Y_c) ** 2))
        # Compare ‖Y_c‖ with ‖Y‖ (not their squares' norms) so the tolerance is on the
        # scale of the rounding of Y_c itself.
        target_scale = xp.sqrt(xp.sum(Y * Y))
        single = "every row of `Y` is the same target (e.g. a single class)"
    kernel_norm = xp.sqrt(xp.sum(K_c * K_c))
    if is_concrete(kernel_norm) and is_concrete(target_norm):
        rtol = _rounding_rtol(K.dtype, n)
        if not bool(xp.isfinite(kernel_norm)):
            raise ValueError(
                f"`K` contains NaN or infinite values, or entries too large for the "
                f"Frobenius norm in {K.dtype}: the network has diverged or its inputs "
                f"are far beyond unit scale. Pass a finite kernel (standardise the "
                f"inputs, or compute the kernel in float64).")
        if not bool(xp.isfinite(target_norm)):
            raise ValueError(
                "`Y` contains NaN or infinite values. Pass finite labels or targets.")
        kernel_scale = float(xp.sqrt(xp.sum(K * K)))
        if float(kernel_norm) <= rtol * kernel_scale:
            relative = float(kernel_norm) / kernel_scale if kernel_scale > 0 else 0.0
            raise ValueError(
                f"The centred kernel H K H is zero (Frobenius norm {relative:.3g} times "
                f"that of `K`, at the round-off level of {K.dtype}): `K` is constant over "
                f"the samples, so its centred alignment is undefined. Pass a kernel that "
                f"varies across samples, or use `kernel_target_alignment` for the "
                f"uncentred alignment.")
        if Y.ndim == 1:
            target_zero = bool(target_norm <= rtol * target_scale)
        else:
            target_zero = bool(xp.sqrt(xp.sum(Y_c * Y_c)) <= rtol * target_scale)
        if target_zero:
            raise ValueError(
                f"The centred target H Y Yᵀ H is zero: {single}, so the centred "
                f"alignment is undefined. Pass labels with at least two classes or "
                f"targets that vary across samples.")
    with np.errstate(invalid="ignore", divide="ignore"):
        return _result(xp, xp.clip(inner / (kernel_norm * target_norm), -1.0, 1.0))


# --------------------------------------------------------------------------------------
# Kernel spectrum
# --------------------------------------------------------------------------------------

def _host_symmetric_kernel(K):
    """``K`` as a float64 numpy matrix, checked square, non-empty, finite and symmetric
    (up to ``sqrt(eps)`` of its own dtype, relative), then symmetrised."""
    refuse_sparse(K, "K")
    if isinstance(K, jax.core.Tracer):
        raise TypeError(
            "`K` is a traced jax array: the spectrum is computed on the host with scipy "
            "and cannot run under `jax.jit`. Call this function outside jitted code.")
    K = np.asarray(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(
            f"`K` must be a non-empty square kernel of shape (n, n), got shape "
            f"{K.shape}. Pass the kernel of a set of samples with itself, e.g. "
            f"`empirical_ntk(params, X)` (not a cross kernel of two sets).")
    in_dtype = K.dtype if np.issubdtype(K.dtype, np.floating) else np.float64
    K = K.astype(np.float64)
    if not np.all(np.isfinite(K)):
        raise ValueError(
            "`K` contains NaN or infinite values: the network has diverged or its "
            "inputs are far beyond unit scale. Pass a finite kernel.")
    scale = np.linalg.norm(K)
    asymmetry = np.linalg.norm(K - K.T)
    if asymmetry > np.sqrt(np.finfo(in_dtype).eps) * scale:
        raise ValueError(
            f"`K` is not symmetric (‖K − Kᵀ‖_F / ‖K‖_F = {asymmetry / scale:.3g}): its "
            f"eigenvalues are those of a kernel of one set of samples with itself. Pass "
            f"`empirical_ntk(params, X)`, not a cross kernel of two sets.")
    return (K + K.T) / 2


def kernel_spectrum(K, n_eigenvalues=None):
    """Eigenvalues of a symmetric kernel, in decreasing order.

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric kernel matrix, numpy or (concrete) jax array; copied to the host and
        decomposed in float64 with :func:`scipy.linalg.eigvalsh`, so not usable under
        ``jax.jit``. Symmetric up to ``sqrt(eps)`` of its dtype (relative Frobenius
        norm of ``K − Kᵀ``), the round-off of a float32 kernel; it is symmetrised.
    n_eigenvalues : int or None, default=None
        Return only the ``n_eigenvalues`` largest (at most ``n``: a larger value
        returns all ``n``); ``None`` returns all ``n``.

    Returns
    -------
    eigenvalues : numpy.ndarray of shape (n,) or (min(n_eigenvalues, n),), float64
        ``λ_1 >= λ_2 >= ...``. For a positive semi-definite kernel, as every empirical
        NTK is, they are non-negative up to round-off (about ``n · eps · λ_1`` of the
        kernel's dtype); they are returned as computed, not clipped.

    Raises
    ------
    ValueError
        If ``K`` is not a non-empty square matrix, is not symmetric, holds NaN or
        infinite values, or ``n_eigenvalues`` is not an integer >= 1.
    TypeError
        If ``K`` is a scipy sparse matrix or a traced jax array.

    Notes
    -----
    LAPACK symmetric eigensolvers through :func:`scipy.linalg.eigvalsh`: time
    ``O(n³)`` (about a second for ``n = 2000``), memory ``O(n²)`` float64 on the host.
    With ``n_eigenvalues`` only that many eigenvalues are computed
    (``subset_by_index``).
    """
    if n_eigenvalues is not None and (
            isinstance(n_eigenvalues, (bool, np.bool_))
            or not isinstance(n_eigenvalues, (int, np.integer)) or n_eigenvalues < 1):
        raise ValueError(
            f"`n_eigenvalues` must be an integer >= 1 (the number of largest eigenvalues "
            f"to return) or None for all of them, got {n_eigenvalues!r}.")
    K = _host_symmetric_kernel(K)
    n = K.shape[0]
    if n_eigenvalues is None or n_eigenvalues >= n:
        eigenvalues = scipy.linalg.eigvalsh(K, check_finite=False)
    else:
        eigenvalues = scipy.linalg.eigvalsh(
            K, subset_by_index=[n - int(n_eigenvalues), n - 1], check_finite=False)
    return np.ascontiguousarray(eigenvalues[::-1], dtype=np.float64)


def effective_rank(K):
    """Effective rank of a positive semi-definite kernel, ``exp(−Σ_i p_i log p_i)``.

    ``p_i = λ_i / Σ_j λ_j`` are its eigenvalues normalised to sum to one, and
    ``0 log 0 = 0`` (Roy and Vetterli, EUSIPCO 2007, "The effective rank: a measure
    of effective dimensionality", Definition 1, stated for singular values, which are
    the eigenvalues of a positive semi-definite matrix). The exponential of the
    Shannon entropy of the spectrum: ``n`` for a kernel with ``n`` equal eigenvalues
    (e.g. the identity), 1 for a rank-one kernel, and ``k`` for ``k`` equal non-zero
    eigenvalues.

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric positive semi-definite kernel matrix, numpy or (concrete) jax array,
        decomposed on the host in float64 as in :func:`kernel_spectrum`.

    Returns
    -------
    rank : float
        In ``[1, n]`` (clipped to it against round-off), unchanged by scaling ``K`` by
        a positive factor.

    Raises
    ------
    ValueError
        If ``K`` is not a non-empty square matrix, is not symmetric, holds NaN or
        infinite values, or has no positive eigenvalue (an all-zero spectrum, e.g.
        ``K = 0``).
    TypeError
        If ``K`` is a scipy sparse matrix or a traced jax array.

    Notes
    -----
    Negative eigenvalues, which round-off gives a positive semi-definite kernel
    (about ``n · eps · λ_1``), are clipped to 0 before normalising; for a matrix that
    is not positive semi-definite the clipped value is not meaningful. Round-off also
    leaves small positive eigenvalues, each adding ``p log(1/p)`` to the entropy: a
    rank-one float32 kernel of 1000 samples gives about ``1 + 5e-6``, in float64
    ``1 + 2e-13``. Time ``O(n³)``, memory ``O(n²)``.
    """
    spectrum = kernel_spectrum(K)
    rank = _effective_rank_of_spectrum(spectrum)
    if np.isnan(rank):
        raise ValueError(
            f"`K` has no positive eigenvalue (the largest is {spectrum[0]:.3g}): its "
            f"spectrum is all zero after clipping round-off negatives, so the effective "
            f"rank is undefined. Pass a non-zero positive semi-definite kernel, e.g. "
            f"`empirical_ntk(params, X)`.")
    return rank


def _effective_rank_of_spectrum(eigenvalues):
    """``exp(H(p))`` of the eigenvalues of a symmetric kernel, ``p = lambda / sum(lambda)``
    over the eigenvalues clipped at 0 (``0 log 0 = 0``), clipped to ``[1, n]``; NaN when
    none is positive. The definition behind :func:`effective_rank`, for callers that
    already hold the spectrum."""
    eigenvalues = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    total = eigenvalues.sum()
    if not total > 0:
        return float("nan")
    p = eigenvalues[eigenvalues > 0] / total
    entropy = -np.sum(p * np.log(p))
    return float(np.clip(np.exp(entropy), 1.0, eigenvalues.size))
