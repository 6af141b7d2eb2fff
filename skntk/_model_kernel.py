"""The empirical NTK of any network ``apply_fn(params, X) -> (n, C)`` by automatic
differentiation: the generic path beside the MLP's layer-wise engine
(:mod:`skntk._kernel_engine`).

``params`` is any pytree of arrays and ``apply_fn`` a pure function, hashable (a
module-level function: it is a static argument of the compiled programs). The traced
kernel is ``K(x, x') = Σ_c ⟨J_c(x), J_c(x')⟩`` with ``J_c = ∂f_c/∂params``, and the
per-logit kernel keeps ``(c, c')``. Two ways compute it, as in neural-tangents'
``empirical_ntk_fn`` (Novak, Sohl-Dickstein and Schoenholz, ICML 2022, "Fast finite
width neural tangent kernel", "Jacobian contraction" and "NTK-vector products"):

- :func:`kernel_tiles`: per-sample Jacobians of a block of rows and of a block of
  columns (``jax.vmap(jax.jacrev(...))``), contracted into one ``(b1, b2)`` tile; memory
  ``(b1 + b2) · C · P`` floats for ``P`` parameters, never ``n · C · P``.
- :func:`product`: ``K(X, X2) V`` without any Jacobian: ``G_{j,c} = J_c(X2)ᵀ V[:, j]``
  accumulated by vector-Jacobian products over row blocks of ``X2`` (``k · C · P``
  floats), then ``Σ_c J_c(X) G_{j,c}`` by Jacobian-vector products over row blocks of
  ``X``.

The working memory of every compiled block is read from XLA's memory analysis of its
program before anything runs (:func:`compiled_bytes`), so that callers check a budget
for any network, whatever its layers.
"""

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from ._kernel_engine import block_starts, row_blocks


def n_parameters(params):
    """Number of scalars in the pytree ``params``."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(params))


def _jacobians(apply_fn, params, X):
    """Per-sample Jacobians, one leaf per parameter leaf, flattened to ``(n, C, p)``."""
    def one_sample(p, x):
        return apply_fn(p, x[None])[0]

    J = jax.vmap(jax.jacrev(one_sample), in_axes=(None, 0))(params, X)
    return [leaf.reshape(leaf.shape[0], leaf.shape[1], -1) for leaf in jax.tree.leaves(J)]


def jacobian_contraction(apply_fn, params, X1, X2, per_logit):
    """``K(X1, X2)`` from the per-sample Jacobians of ``apply_fn`` (traceable):
    ``(n1, n2)``, or ``(n1, n2, C, C)`` with ``per_logit``; ``X2=None`` reuses the
    Jacobians of ``X1``."""
    J1 = _jacobians(apply_fn, params, X1)
    J2 = J1 if X2 is None else _jacobians(apply_fn, params, X2)
    spec = "icp,jdp->ijcd" if per_logit else "icp,jcp->ij"
    return sum(jnp.einsum(spec, a, b) for a, b in zip(J1, J2))


jacobian_tile = jax.jit(jacobian_contraction, static_argnames=("apply_fn", "per_logit"))
"""One tile ``K(X1, X2)`` of two blocks, compiled (:func:`jacobian_contraction`)."""


@partial(jax.jit, donate_argnums=0)
def _write_tile(K, tile, start1, start2):
    return lax.dynamic_update_slice(K, tile, (start1, start2) + (0,) * (K.ndim - 2))


def compiled_bytes(function, *args, **static):
    """Bytes XLA allocates to run ``function(*args, **static)`` once (temporaries,
    outputs and arguments, from ``memory_analysis`` of the compiled program), and the
    compiled program, which runs without compiling again."""
    compiled = function.lower(*args, **static).compile()
    stats = compiled.memory_analysis()
    n_bytes = (stats.temp_size_in_bytes + stats.output_size_in_bytes
               + stats.argument_size_in_bytes)
    return int(n_bytes), compiled


def _starts(n, block):
    return [0] if n <= block else block_starts(n, block)


def tile_plan(apply_fn, params, X1, X2, block_size, per_logit):
    """The compiled tile program of :func:`kernel_tiles` and its working memory in
    bytes (one row block and one column block of ``block_size`` rows at most)."""
    b1, b2 = min(block_size, X1.shape[0]), min(block_size, X2.shape[0])
    return compiled_bytes(jacobian_tile, apply_fn, params, X1[:b1], X2[:b2],
                          per_logit=per_logit)


def kernel_tiles(compiled_tile, params, X1, X2, block_size, n_outputs, per_logit):
    """``K(X1, X2)`` tile by tile with the program of :func:`tile_plan`; ``X2=None``:
    ``K(X1, X1)``, whose tiles below the diagonal are the transposes of those above.
    The last block of each axis is shifted back to end at ``n`` (one tile shape).
    Every tile recomputes the Jacobians of its two blocks: about ``n1 · n2 / b``
    per-sample Jacobians in all (half that for ``X2=None``), for ``2 · b · C · P``
    floats of working memory."""
    symmetric = X2 is None
    X2 = X1 if symmetric else X2
    n1, n2 = X1.shape[0], X2.shape[0]
    b1, b2 = min(block_size, n1), min(block_size, n2)
    shape = (n1, n2, n_outputs, n_outputs) if per_logit else (n1, n2)
    K = jnp.zeros(shape, X1.dtype)
    starts2 = _starts(n2, b2)
    for i, start1 in enumerate(_starts(n1, b1)):
        for start2 in starts2[i:] if symmetric else starts2:
            tile = compiled_tile(params, X1[start1:start1 + b1], X2[start2:start2 + b2])
            K = _write_tile(K, tile, start1, start2)
            if symmetric and start2 != start1:
                mirrored = tile.transpose(1, 0, 3, 2) if per_logit else tile.T
                K = _write_tile(K, mirrored, start2, start1)
    return K


@partial(jax.jit, static_argnames="apply_fn")
def pull_back(apply_fn, params, X2_blocks, V_blocks):
    """``G[j, c] = J_c(X2)ᵀ V[:, j]`` for every column ``j`` of ``V`` and output ``c``:
    the parameter pytree with leading axes ``(k, C)``, accumulated over the row blocks
    (``(n_blocks, b, ...)``; zero rows of ``V`` pad the last block)."""
    def block(Xb, Vb):
        outputs, vjp = jax.vjp(lambda p: apply_fn(p, Xb), params)
        eye = jnp.eye(outputs.shape[1], dtype=outputs.dtype)
        per_output = jax.vmap(lambda v, e: vjp(v[:, None] * e[None, :])[0], in_axes=(None, 0))
        return jax.vmap(per_output, in_axes=(1, None))(Vb, eye)

    def body(acc, xs):
        return jax.tree.map(jnp.add, acc, block(*xs)), None

    first = block(X2_blocks[0], V_blocks[0])
    return lax.scan(body, first, (X2_blocks[1:], V_blocks[1:]))[0]


@partial(jax.jit, static_argnames="apply_fn")
def push_forward(apply_fn, params, X_blocks, G):
    """``Σ_c J_c(X) G[j, c]`` for every ``j``: shape ``(n_blocks, b, k)``."""
    def block(Xb):
        def one(g, e):
            return jax.jvp(lambda p: apply_fn(p, Xb), (params,), (g,))[1] @ e

        n_outputs = jax.tree.leaves(G)[0].shape[1]
        eye = jnp.eye(n_outputs, dtype=Xb.dtype)
        per_output = jax.vmap(one, in_axes=(0, 0))
        return jnp.sum(jax.vmap(per_output, in_axes=(0, None))(G, eye), axis=1).T

    return lax.map(block, X_blocks)


def product_plan(apply_fn, params, X, V, X2, block_size):
    """Blocked inputs of :func:`product` and the working memory of its two programs in
    bytes (the larger of the two, each counting its arguments and outputs)."""
    b2, b1 = min(block_size, X2.shape[0]), min(block_size, X.shape[0])
    X2_blocks, V_blocks = row_blocks(X2, b2), row_blocks(V, b2)
    X_blocks = row_blocks(X, b1)
    pull_bytes, pull = compiled_bytes(pull_back, apply_fn, params, X2_blocks, V_blocks)
    G = jax.eval_shape(partial(pull_back, apply_fn), params, X2_blocks, V_blocks)
    push_bytes, push = compiled_bytes(push_forward, apply_fn, params, X_blocks, G)
    return max(pull_bytes, push_bytes), (pull, push, X2_blocks, V_blocks, X_blocks)


def product(plan, params, n_rows):
    """``K(X, X2) V``, shape ``(n_rows, k)``, from the blocks and programs of
    :func:`product_plan`."""
    pull, push, X2_blocks, V_blocks, X_blocks = plan
    G = pull(params, X2_blocks, V_blocks)
    out = push(params, X_blocks, G)
    return out.reshape(-1, out.shape[2])[:n_rows]


@partial(jax.jit, static_argnames="apply_fn")
def diagonal(apply_fn, params, X_blocks):
    """``K(x, x) = Σ_c ||J_c(x)||²`` for every row of the blocks ``(n_blocks, b, ...)``:
    shape ``(n_blocks, b)``, from the per-sample Jacobians of one block at a time."""
    def block(Xb):
        return sum(jnp.sum(J * J, axis=(1, 2)) for J in _jacobians(apply_fn, params, Xb))

    return lax.map(block, X_blocks)


def blocked_product(apply_fn, params, X, V, X2, block_size):
    """``K(X, X2) V`` of shape ``(n, k)`` by :func:`pull_back` and :func:`push_forward`
    over row blocks of ``block_size`` rows at most (no memory check: the caller's)."""
    X2_blocks = row_blocks(X2, min(block_size, X2.shape[0]))
    V_blocks = row_blocks(V, X2_blocks.shape[1])
    G = pull_back(apply_fn, params, X2_blocks, V_blocks)
    out = push_forward(apply_fn, params, row_blocks(X, min(block_size, X.shape[0])), G)
    return out.reshape(-1, out.shape[2])[:X.shape[0]]
