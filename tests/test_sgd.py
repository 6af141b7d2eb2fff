import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skntk._buckets import pad_rows
from skntk._losses import CROSS_ENTROPY, mean_loss
from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk._sgd import compiled_batch_size, epoch_order, n_batches_per_epoch, sgd_epoch


def _problem(n=23, d=5, C=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = np.eye(C, dtype=np.float32)[rng.randint(C, size=n)]
    params = params_to_jax(init_mlp_params((d, 7, C), rng))
    return params, X, Y


def _reference_epoch(params, X, Y, order, lr, batch_size):
    """Plain Python loop over the same permutation, one gradient per batch."""
    grad = jax.grad(lambda p, xb, yb: mean_loss(CROSS_ENTROPY, mlp_forward(p, xb), yb))
    for start in range(0, X.shape[0], batch_size):
        idx = order[start:start + batch_size]
        g = grad(params, X[idx], Y[idx])
        params = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g)
    return params


def _assert_params_close(got, want, rtol=1e-5, atol=1e-6):
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("batch_size", [5, 23, 22])
def test_epoch_matches_python_loop_with_partial_last_batch(batch_size):
    params, X, Y = _problem()
    batch = compiled_batch_size(batch_size, 23, 23)
    order = epoch_order(np.random.RandomState(3), 23, 23, batch)
    got = sgd_epoch(params, jnp.asarray(X), jnp.asarray(Y), order, 23, 0.1, batch)
    want = _reference_epoch(params, X, Y, order[:23], 0.1, batch_size)
    _assert_params_close(got, want)


@pytest.mark.parametrize("batch_size", [5, 8, 23, 100])
def test_padded_epoch_equals_unpadded_epoch(batch_size):
    # 23 real rows padded to 40: same permutation, same batches; the padding rows
    # (zeros, weight 0) and the batches made only of padding change nothing.
    params, X, Y = _problem()
    want_batch = compiled_batch_size(batch_size, 23, 23)
    want_order = epoch_order(np.random.RandomState(7), 23, 23, want_batch)
    want = sgd_epoch(params, jnp.asarray(X), jnp.asarray(Y), want_order, 23, 0.1, want_batch)
    batch = compiled_batch_size(batch_size, 23, 40)
    order = epoch_order(np.random.RandomState(7), 23, 40, batch)
    np.testing.assert_array_equal(order[:23], want_order[:23])
    got = sgd_epoch(params, jnp.asarray(pad_rows(X, 40)), jnp.asarray(pad_rows(Y, 40)), order,
                    23, 0.1, batch)
    _assert_params_close(got, want, rtol=1e-6, atol=1e-7)


def test_epoch_order_is_a_permutation_then_padding_slots():
    order = epoch_order(np.random.RandomState(0), 10, 16, 4)
    assert order.shape == (16,) and order.dtype == np.int32
    np.testing.assert_array_equal(np.sort(order[:10]), np.arange(10))
    np.testing.assert_array_equal(order[10:], 0)
    assert epoch_order(np.random.RandomState(0), 10, 17, 4).shape == (20,)


def test_compiled_batch_size_is_one_batch_of_all_rows_when_the_batch_covers_the_data():
    assert compiled_batch_size(64, 1000, 1024) == 64
    assert compiled_batch_size(30, 30, 32) == 32
    assert compiled_batch_size(10_000, 30, 32) == 32


def test_batches_cover_every_sample():
    assert n_batches_per_epoch(23, 5) == 5
    assert n_batches_per_epoch(23, 100) == 1
    assert n_batches_per_epoch(20, 5) == 4
