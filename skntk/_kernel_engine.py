"""The kernel engine: layer factors of the MLP's empirical NTK, row blocks, input checks.

Every kernel of skntk (:mod:`skntk.ntk`, the kernel phases, the matrix-free solver, the
switch monitors and the kernel diagnostics) is built from the functions here, which
import no other skntk module than two leaves: the table of activations
(:mod:`skntk._activations`) and the input checks (:mod:`skntk._validation`).

The network is the MLP of :func:`skntk._mlp.mlp_forward`: parameters a list of
``(W_l, b_l)``, ``W_l`` of shape ``(fan_in, fan_out)``, ``h_0 = x``,
``z_l = h_{l-1} W_l + b_l``, ``h_l = φ(z_l)`` on the ``L - 1`` hidden layers and
``f = z_L``. The gradient of logit ``f_c`` with respect to ``W_l`` is the outer product
``h_{l-1} ⊗ δ_{l,c}`` with ``δ_{l,c} = ∂f_c/∂z_l``, and with respect to ``b_l`` it is
``δ_{l,c}``, so the traced empirical NTK (Jacot, Gabriel and Hongler, NeurIPS 2018)
factors layer by layer (Novak, Sohl-Dickstein and Schoenholz, ICML 2022, "Fast finite
width neural tangent kernel", section 3, "structured derivatives")::

    K(x, x') = Σ_c ⟨J_c(x), J_c(x')⟩
             = Σ_l (s_W,l ⟨h_{l-1}(x), h_{l-1}(x')⟩ + s_b,l) · Σ_c ⟨δ_{l,c}(x), δ_{l,c}(x')⟩,

with ``(s_W,l, s_b,l) = (1, 1)`` in the standard parameterisation and
``(σ_w²/n_{l-1}, σ_b²)`` in the NTK parameterisation (:mod:`skntk._parameterization`;
the kernel is then ``J D Jᵀ``). The documentation's "Method" page (``docs/method.rst``,
"Empirical NTK") states the conventions.

The factors come from one forward pass that keeps the layer inputs and the
derivatives ``φ'(z_l)`` (:func:`forward_layers`) and one backward pass of all ``C``
logits at once (:func:`backward_signals`). The activation ``φ`` is named by the
``scales`` argument (:func:`skntk._activations.activation_of`; ReLU for ``None``), and
ReLU'(0) is 0, as in ``jax.nn.relu``. Two layouts use them:

- :func:`layer_features` and :func:`combine`: Gram matrices of the factors of two sets
  of samples, for dense kernels (:func:`kernel`);
- :func:`factor_pairs`: ``K = Σ_l (P_l P_lᵀ) ∘ (Q_l Q_lᵀ)``, for the matrix-free
  kernel-vector products of :mod:`skntk._matrix_free`.

Inputs reach the engine through :func:`prepare_inputs` (and :func:`prepare_vectors` for
the right-hand sides of a product): one set of checks with one set of messages for every
public kernel function.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._activations import ACTIVATIONS, DEFAULT_ACTIVATION, activation_of
from ._validation import refuse_sparse

# --------------------------------------------------------------------------------------
# Input preparation and checks
# --------------------------------------------------------------------------------------


def is_concrete(x):
    """Whether ``x`` holds values (is not traced under ``jax.jit``)."""
    return not isinstance(x, jax.core.Tracer)


def check_positive_int(value, name):
    """``value`` as an ``int`` if it is an integer ``>= 1``, else a ``ValueError``
    naming the parameter ``name``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def check_params(params):
    """``params`` as a list of ``(W, b)`` jax arrays of consistent shapes.

    Raises
    ------
    TypeError
        If ``params`` is not a sequence of pairs of arrays.
    ValueError
        If it is empty or a layer's shapes do not chain with the layer before.
    """
    try:
        params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "`params` must be a sequence of (W, b) pairs of arrays, W of shape "
            "(fan_in, fan_out) and b of shape (fan_out,); for a fitted classifier pass "
            "list(zip(clf.coefs_, clf.intercepts_)).") from exc
    if not params:
        raise ValueError("`params` must hold at least one (W, b) layer; got none.")
    fan_in = params[0][0].shape[0] if params[0][0].ndim == 2 else None
    for layer, (W, b) in enumerate(params, start=1):
        if W.ndim != 2 or W.shape[0] != fan_in or b.shape != (W.shape[1],):
            raise ValueError(
                f"Layer {layer} of `params` has W of shape {W.shape} and b of shape "
                f"{b.shape}; expected W of shape ({fan_in}, fan_out) and b of shape "
                f"(fan_out,), W's rows matching the outputs of the layer before.")
        fan_in = W.shape[1]
    return params


def layer_sizes(params):
    """``(n_features, *widths, n_outputs)`` of a parameter list."""
    return (params[0][0].shape[0], *(W.shape[1] for W, _ in params))


def float_dtype(*arrays):
    """Common floating dtype of the arrays: their result type if it is floating (float32,
    or float64 when the caller enables x64 and passes float64), else the default float."""
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def cast_params(params, dtype):
    """Every ``W`` and ``b`` of ``params`` in ``dtype``."""
    return [(W.astype(dtype), b.astype(dtype)) for W, b in params]


def check_finite(params, arrays):
    """Refuse NaN or infinite values in the parameters or the (already cast) inputs.

    ``arrays`` is a sequence of ``(name, array or None)``. Values beyond the range of
    the computation dtype (float32 unless x64 is enabled) have become infinite in the
    cast and are refused too. Skipped for traced arrays.
    """
    for layer, (W, b) in enumerate(params, start=1):
        for what, leaf in (("W", W), ("b", b)):
            if is_concrete(leaf) and not bool(jnp.all(jnp.isfinite(leaf))):
                raise ValueError(
                    f"`params` hold NaN or infinite values (layer {layer}, {what}): the "
                    f"network has diverged, and its kernel would be NaN. Train with a "
                    f"smaller learning rate.")
    for name, X in arrays:
        if X is not None and is_concrete(X) and not bool(jnp.all(jnp.isfinite(X))):
            raise ValueError(
                f"`{name}` contains NaN or infinite values, or values beyond the "
                f"{X.dtype} range (about {float(jnp.finfo(X.dtype).max):.3g}) of the "
                f"computation. Remove or impute them, and rescale large inputs (e.g. "
                f"with sklearn.preprocessing.StandardScaler).")


def prepare_inputs(params, X1, X2=None, names=("X1", "X2")):
    """Check and cast the parameters and inputs of a kernel computation.

    Parameters
    ----------
    params : sequence of (W, b)
        Network parameters.
    X1 : array-like of shape (n1, n_features)
    X2 : array-like of shape (n2, n_features) or None, default=None
    names : pair of str, default=("X1", "X2")
        Names of ``X1`` and ``X2`` in the error messages.

    Returns
    -------
    params : list of (jax.Array, jax.Array)
    X1 : jax.Array of shape (n1, n_features)
    X2 : jax.Array of shape (n2, n_features) or None
    dtype : numpy dtype
        The common floating dtype (:func:`float_dtype`) in which all are returned.

    Raises
    ------
    TypeError
        If an input is a scipy sparse matrix or ``params`` is not a sequence of
        ``(W, b)`` pairs.
    ValueError
        If the shapes do not match the network or any value is NaN or infinite
        (:func:`check_finite`).
    """
    refuse_sparse(X1, names[0])
    refuse_sparse(X2, names[1])
    params = check_params(params)
    X1 = jnp.asarray(X1)
    X2 = None if X2 is None else jnp.asarray(X2)
    dtype = float_dtype(*jax.tree.leaves(params), X1, *([] if X2 is None else [X2]))
    params = cast_params(params, dtype)
    X1 = X1.astype(dtype)
    X2 = None if X2 is None else X2.astype(dtype)
    n_features = params[0][0].shape[0]
    for name, X in zip(names, (X1, X2)):
        if X is not None and (X.ndim != 2 or X.shape[1] != n_features):
            raise ValueError(
                f"`{name}` must have shape (n_samples, {n_features}) to match the first "
                f"weight matrix, got shape {X.shape}.")
    check_finite(params, zip(names, (X1, X2)))
    return params, X1, X2, dtype


def prepare_vectors(V, n_rows, dtype, name="V"):
    """The right-hand side of a kernel-vector product, checked and cast.

    Parameters
    ----------
    V : array-like of shape (n_rows,) or (n_rows, k)
    n_rows : int
        Columns of the kernel.
    dtype : numpy dtype

    Returns
    -------
    V : jax.Array of the same shape, in ``dtype``

    Raises
    ------
    TypeError
        If ``V`` is a scipy sparse matrix.
    ValueError
        If its shape does not match or it holds NaN or infinite values.
    """
    refuse_sparse(V, name)
    V = jnp.asarray(V, dtype=dtype)
    if V.ndim not in (1, 2) or V.shape[0] != n_rows:
        raise ValueError(
            f"`{name}` must have shape ({n_rows},) or ({n_rows}, k) to match the "
            f"columns of the kernel, got shape {V.shape}.")
    check_finite([], [(name, V)])
    return V


# --------------------------------------------------------------------------------------
# Forward and backward factors
# --------------------------------------------------------------------------------------

def forward_layers(params, X, activation=DEFAULT_ACTIVATION):
    """Forward pass keeping what the kernel factors need.

    Returns
    -------
    inputs : list of L arrays
        ``inputs[l]`` is the input ``h_l`` of layer ``l`` (0-based), shape
        ``(n, fan_in_l)``; ``inputs[0] = X``.
    masks : list of L - 1 arrays
        ``φ'(z_l)`` of hidden layer ``l``, shape ``(n, w_l)``; for ReLU, 1 where the
        pre-activation is positive and 0 elsewhere (``relu'(0) = 0``, as in
        ``jax.nn.relu``).
    """
    phi = ACTIVATIONS[activation]
    inputs, masks = [X], []
    h = X
    for W, b in params[:-1]:
        z = h @ W + b
        masks.append(phi.derivative(z))
        h = phi.function(z)
        inputs.append(h)
    return inputs, masks


def logits(params, X, activation=DEFAULT_ACTIVATION):
    """``f(X)`` of shape ``(n, C)``: the same function as :func:`skntk._mlp.mlp_forward`."""
    inputs, _ = forward_layers(params, X, activation)
    W, b = params[-1]
    return inputs[-1] @ W + b


def backward_signals(params, masks, per_logit):
    """Back-propagated signals ``δ_{l,c} = ∂f_c/∂z_l`` of the hidden layers, all ``C``
    logits at once.

    Returns
    -------
    signals : list of L - 1 arrays
        With ``per_logit``, ``δ_l`` itself, shape ``(n, C, w_l)``. Otherwise a matrix
        ``S_l`` with ``S_l(x) · S_l(x') = Σ_c ⟨δ_{l,c}(x), δ_{l,c}(x')⟩``: shape
        ``(n, C · w_l)``, and ``(n, w_l)`` for the last hidden layer, where
        ``Σ_c W_L[j, c]² m_j(x) m_j(x')`` collapses the logit axis.
    """
    signals = [None] * (len(params) - 1)
    if not signals:
        return signals
    n = masks[-1].shape[0]
    W_out = params[-1][0]
    # δ of the last hidden layer: δ_c(x)_j = W_out[j, c] · m_j(x).
    delta = W_out.T[None, :, :] * masks[-1][:, None, :]
    if per_logit:
        signals[-1] = delta
    else:
        signals[-1] = masks[-1] * jnp.sqrt(jnp.sum(W_out**2, axis=1))
    for layer in range(len(params) - 3, -1, -1):
        delta = (delta @ params[layer + 1][0].T) * masks[layer][:, None, :]
        signals[layer] = delta if per_logit else delta.reshape(n, -1)
    return signals


def layer_features(params, X, per_logit, activation=DEFAULT_ACTIVATION):
    """Per-layer factors of the kernel for one set of samples: ``(inputs, signals)`` of
    :func:`forward_layers` and :func:`backward_signals`."""
    inputs, masks = forward_layers(params, X, activation)
    return inputs, backward_signals(params, masks, per_logit)


def feature_width(layer_sizes, per_logit):
    """Floats per sample of the factors returned by :func:`layer_features`."""
    *_, n_classes = layer_sizes
    fan_ins = layer_sizes[:-1]
    hidden = layer_sizes[1:-1]
    width = sum(fan_ins)
    if per_logit:
        return width + n_classes * sum(hidden)
    if hidden:
        width += n_classes * sum(hidden[:-1]) + hidden[-1]
    return width


def combine(features1, features2, n_classes, per_logit, scales=None):
    """Kernel between two sets of samples from their :func:`layer_features`.

    ``scales``: the per-layer ``(s_W, s_b)`` of the parameterisation (``None``: 1 and
    1), which weigh the weight and the bias parts of each layer's input Gram matrix.
    Returns the traced kernel ``(n1, n2)``, or with ``per_logit`` the kernel
    ``(n1, n2, C, C)``; for the output layer ``Σ_c ⟨δ_{L,c}, δ_{L,c}⟩ = C``
    (``δ_{L,c} = e_c``).
    """
    inputs1, signals1 = features1
    inputs2, signals2 = features2

    def input_gram(layer):
        gram = inputs1[layer] @ inputs2[layer].T
        if scales is None:
            return gram + 1
        s_w, s_b = scales[layer]
        return s_w * gram + s_b

    if per_logit:
        eye = jnp.eye(n_classes, dtype=inputs1[0].dtype)
        K = input_gram(-1)[:, :, None, None] * eye
        for layer, (s1, s2) in enumerate(zip(signals1, signals2)):
            K = K + input_gram(layer)[:, :, None, None] * jnp.einsum("icw,jdw->ijcd", s1, s2)
        return K
    K = n_classes * input_gram(-1)
    for layer, (s1, s2) in enumerate(zip(signals1, signals2)):
        K = K + input_gram(layer) * (s1 @ s2.T)
    return K


def kernel(params, X1, X2, per_logit, scales=None):
    """Whole kernel ``K(X1, X2)`` in one piece (traceable); ``X2=None`` reuses the
    factors of ``X1``. Parameters and inputs are cast to their common floating dtype;
    nothing is checked (see :func:`prepare_inputs`)."""
    dtype = float_dtype(*jax.tree.leaves(params), X1)
    params, X1 = cast_params(params, dtype), X1.astype(dtype)
    n_classes = params[-1][0].shape[1]
    activation = activation_of(scales)
    features1 = layer_features(params, X1, per_logit, activation)
    features2 = features1 if X2 is None else layer_features(params, X2.astype(dtype),
                                                            per_logit, activation)
    return combine(features1, features2, n_classes, per_logit, scales)


def factor_pairs(params, X, scales=None):
    """Factors ``(P_l, Q_l)`` with ``K(X, X') = Σ_l (P_l P_l'ᵀ) ∘ (Q_l Q_l'ᵀ)``.

    One pair per layer: the layer input with a column of ones, ``H_l = [h_{l-1}, 1]``
    (``[√s_W,l · h_{l-1}, √s_b,l]`` with ``scales``), and the signals ``S_l`` of
    :func:`backward_signals` (``√C · 1`` for the output layer). ``P`` is the narrower of
    the two (the one expanded by the columns of a product); widths as in
    :func:`pair_widths`.
    """
    n = X.shape[0]
    dtype = X.dtype
    inputs, signals = layer_features(params, X, False, activation_of(scales))
    n_classes = params[-1][0].shape[1]
    signals = signals + [jnp.full((n, 1), np.sqrt(n_classes), dtype)]
    ones = jnp.ones((n, 1), dtype)
    pairs = []
    for layer, (h_in, S) in enumerate(zip(inputs, signals)):
        if scales is None:
            H = jnp.concatenate([h_in, ones], axis=1)
        else:
            s_w, s_b = scales[layer]
            H = jnp.concatenate([h_in * np.sqrt(s_w), ones * np.sqrt(s_b)], axis=1)
        pairs.append((H, S) if H.shape[1] <= S.shape[1] else (S, H))
    return pairs


def pair_widths(layer_sizes):
    """``(a_l, f_l)``, the widths of the pairs of :func:`factor_pairs`, narrower first."""
    *fan_ins, n_classes = layer_sizes
    hidden = layer_sizes[1:-1]
    signal = [n_classes * w for w in hidden[:-1]] + list(hidden[-1:]) + [1]
    return [tuple(sorted((fan_in + 1, s))) for fan_in, s in zip(fan_ins, signal)]


# --------------------------------------------------------------------------------------
# Row blocks
# --------------------------------------------------------------------------------------

def row_blocks(A, block):
    """Rows of ``A`` as ``(n_blocks, block, ...)``, zero-padded at the end (one block
    shape, hence one compilation, for a ``lax.map`` or ``lax.scan`` over blocks)."""
    n = A.shape[0]
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    if pad:
        A = jnp.pad(A, [(0, pad)] + [(0, 0)] * (A.ndim - 1))
    return A.reshape(n_blocks, block, *A.shape[1:])


def block_starts(n, block):
    """Starts of row blocks of equal size ``block`` covering ``range(n)``, ``n > block``.

    The last block is shifted back to end at ``n`` rather than padded: it recomputes a
    few rows already written (with the same values) but keeps a single block shape,
    hence a single compilation, with no padded copy of the output to slice.
    """
    starts = list(range(0, n - block, block))
    starts.append(n - block)
    return starts


# --------------------------------------------------------------------------------------
# The kernel-block product K(X, X2) V
# --------------------------------------------------------------------------------------
# For factors P (n, a) and Q (n, f) and a column v,
# ((P Pᵀ) ∘ (Q Qᵀ)) v = diag(P (Pᵀ diag(v) Q) Qᵀ), so with the moments
# M_l = P_lᵀ diag(v) Q_l, (K v)_i = Σ_l Σ_{a,f} P_ia Q_if M_l[a, f] (the Hadamard-product
# identity, e.g. Horn and Johnson, "Topics in Matrix Analysis", Lemma 5.1.5). The
# moments are accumulated over the row blocks of X2, then read back over those of X.

def _in_dtype(pairs, dtype):
    """The factors in the accumulation dtype (float32 factors summed in float64 by
    :func:`skntk._matrix_free.cross_kernel_apply`; a no-op otherwise)."""
    return [(P.astype(dtype), Q.astype(dtype)) for P, Q in pairs]


def _moments_block(pairs, V):
    """``M_l = P_lᵀ diag(V[:, j]) Q_l`` for every column ``j``, shape ``(a·k, f)``, in
    the dtype of ``V``."""
    k = V.shape[1]
    out = []
    for P, Q in _in_dtype(pairs, V.dtype):
        # (P ⊗ V)ᵀ laid out (a·k, n) so that the product is a plain (NN) matrix product.
        UT = (P.T[:, None, :] * V.T[None, :, :]).reshape(P.shape[1] * k, P.shape[0])
        out.append(UT @ Q)
    return out


def _apply_block(pairs, moments, k):
    """Rows of ``K V`` from the factors of a row block and the moments of the columns."""
    out = 0
    for (P, Q), M in zip(_in_dtype(pairs, moments[0].dtype), moments):
        T = (Q @ M.T).reshape(Q.shape[0], P.shape[1], k)
        out = out + jnp.einsum("na,nak->nk", P, T)
    return out


def _zero_moments(params, k, dtype):
    return [jnp.zeros((a * k, f), dtype) for a, f in pair_widths(layer_sizes(params))]


@partial(jax.jit, static_argnames="scales")
def moments_from_inputs(params, X_blocks, V_blocks, scales=None):
    """Moments of the columns ``V`` (blocks ``(n_blocks, b, k)``), recomputing the
    factors of each block of rows ``X_blocks`` (``(n_blocks, b, n_features)``)."""
    def body(acc, xs):
        Xb, Vb = xs
        pairs = factor_pairs(params, Xb, scales)
        return [a + m for a, m in zip(acc, _moments_block(pairs, Vb))], None
    init = _zero_moments(params, V_blocks.shape[2], V_blocks.dtype)
    return lax.scan(body, init, (X_blocks, V_blocks))[0]


@jax.jit
def moments_from_pairs(pair_blocks, V_blocks):
    """Moments of the columns from stored factors (``pair_blocks``: leading block axis,
    from :func:`pairs_of_blocks`)."""
    k = V_blocks.shape[2]

    def body(acc, xs):
        pairs, Vb = xs
        return [a + m for a, m in zip(acc, _moments_block(pairs, Vb))], None
    init = [jnp.zeros((P.shape[2] * k, Q.shape[2]), V_blocks.dtype) for P, Q in pair_blocks]
    return lax.scan(body, init, (pair_blocks, V_blocks))[0]


@partial(jax.jit, static_argnames=("k", "scales"))
def apply_to_inputs(params, X_blocks, moments, k, scales=None):
    """Rows of ``K V``, shape ``(n_blocks, b, k)``, from the moments of ``V``."""
    return lax.map(lambda Xb: _apply_block(factor_pairs(params, Xb, scales), moments, k),
                   X_blocks)


@partial(jax.jit, static_argnames="k")
def apply_to_pairs(pair_blocks, moments, k):
    """:func:`apply_to_inputs` from stored factors."""
    return lax.map(lambda pairs: _apply_block(pairs, moments, k), pair_blocks)


@partial(jax.jit, static_argnames="scales")
def pairs_of_blocks(params, X_blocks, scales=None):
    """:func:`factor_pairs` of every block of rows, stacked on a leading block axis."""
    return lax.map(lambda Xb: factor_pairs(params, Xb, scales), X_blocks)


def _diagonal_block(pairs):
    return sum(jnp.sum(P**2, axis=1) * jnp.sum(Q**2, axis=1) for P, Q in pairs)


@jax.jit
def diagonal_from_pairs(pair_blocks):
    """``K(x, x) = Σ_l ‖P_l(x)‖² ‖Q_l(x)‖²`` for every row, from stored factors."""
    return lax.map(_diagonal_block, pair_blocks)


@partial(jax.jit, static_argnames="scales")
def diagonal_from_inputs(params, X_blocks, scales=None):
    """:func:`diagonal_from_pairs`, recomputing the factors of each block."""
    return lax.map(lambda Xb: _diagonal_block(factor_pairs(params, Xb, scales)), X_blocks)


def product_bytes(layer_sizes, k, block, itemsize):
    """Working memory of :func:`ntk_vector_product` for ``k`` columns and row blocks of
    ``block``: ``itemsize · (k · Σ_l a_l f_l + 3 · block · Σ_l (k · a_l + f_l))`` (the
    moments and the temporaries of one block)."""
    widths = pair_widths(layer_sizes)
    return itemsize * (k * sum(a * f for a, f in widths)
                       + 3 * block * sum(k * a + f for a, f in widths))


def ntk_vector_product(params, X, V, *, X2=None, block_size, scales=None):
    """``K(X, X2) @ V`` with ``K`` the traced empirical NTK, without forming ``K``.

    The one kernel-vector product of skntk, behind :func:`skntk.ntk.ntk_vector_product`
    and :func:`skntk._matrix_free.fast_ntk_vector_product`.

    Parameters
    ----------
    params : sequence of (W, b)
    X : array-like of shape (n1, n_features)
    V : array-like of shape (n2,) or (n2, k)
    X2 : array-like of shape (n2, n_features) or None, default=None
        ``None`` means ``X``.
    block_size : int
        Rows per block (at most the number of samples); the last block is zero-padded.
    scales : tuple of (float, float) or None, default=None
        Per-layer ``(s_W, s_b)`` of the parameterisation (``J D Jᵀ``); ``None``: standard.

    Returns
    -------
    KV : jax.Array of shape (n1,) or (n1, k)
        In the common floating dtype of the inputs.

    Raises
    ------
    ValueError, TypeError
        From :func:`prepare_inputs`, :func:`prepare_vectors` and ``block_size``
        (:func:`check_positive_int`).
    """
    block_size = check_positive_int(block_size, "block_size")
    params, X, X2, dtype = prepare_inputs(params, X, X2, names=("X", "X2"))
    X2 = X if X2 is None else X2
    V = prepare_vectors(V, X2.shape[0], dtype)
    vector = V.ndim == 1
    V2 = V[:, None] if vector else V
    out = product(params, X, V2, X2, block_size, scales)
    return out[:, 0] if vector else out


def product(params, X, V, X2, block_size, scales=None):
    """:func:`ntk_vector_product` on prepared inputs, ``V`` of shape ``(n2, k)``: no
    checks."""
    k = V.shape[1]
    block2 = min(block_size, X2.shape[0])
    moments = moments_from_inputs(params, row_blocks(X2, block2), row_blocks(V, block2),
                                  scales)
    block1 = min(block_size, X.shape[0])
    out = apply_to_inputs(params, row_blocks(X, block1), moments, k, scales)
    return out.reshape(-1, k)[:X.shape[0]]
