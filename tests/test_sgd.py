import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skntk._mlp import init_mlp_params, mean_cross_entropy, mlp_forward, params_to_jax
from skntk._sgd import n_batches_per_epoch, sgd_epoch


def _problem(n=23, d=5, C=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = np.eye(C, dtype=np.float32)[rng.randint(C, size=n)]
    params = params_to_jax(init_mlp_params((d, 7, C), rng))
    return params, jnp.asarray(X), jnp.asarray(Y)


def _reference_epoch(params, X, Y, key, lr, batch_size):
    """Plain Python loop over the same permutation, one gradient per batch."""
    order = np.asarray(jax.random.permutation(key, X.shape[0]))
    grad = jax.grad(lambda p, xb, yb: mean_cross_entropy(mlp_forward(p, xb), yb))
    for start in range(0, X.shape[0], batch_size):
        idx = order[start:start + batch_size]
        g = grad(params, X[idx], Y[idx])
        params = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g)
    return params


@pytest.mark.parametrize("batch_size", [5, 23, 22])
def test_epoch_matches_python_loop_with_partial_last_batch(batch_size):
    params, X, Y = _problem()
    key = jax.random.key(3)
    got = sgd_epoch(params, X, Y, key, 0.1, batch_size)
    want = _reference_epoch(params, X, Y, key, 0.1, batch_size)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batches_cover_every_sample():
    assert n_batches_per_epoch(23, 5) == 5
    assert n_batches_per_epoch(23, 100) == 1
    assert n_batches_per_epoch(20, 5) == 4
