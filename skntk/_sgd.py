"""The SGD phase: one jitted function per epoch, a ``lax.scan`` over mini-batches."""

from functools import partial

import jax
import jax.numpy as jnp

from ._devices import constrain_rows, padded_length
from ._mlp import cross_entropy_per_sample, mlp_forward


def n_batches_per_epoch(n_samples, batch_size):
    """Number of mini-batches that cover ``n_samples`` once (the last may be partial)."""
    batch_size = min(batch_size, n_samples)
    return -(-n_samples // batch_size)


def _weighted_batch_loss(params, X, Y, weights):
    per_sample = cross_entropy_per_sample(mlp_forward(params, X), Y)
    return jnp.sum(weights * per_sample) / jnp.sum(weights)


@partial(jax.jit, static_argnames=("batch_size", "mesh"))
def sgd_epoch(params, X, Y, key, learning_rate, batch_size, mesh=None):
    """One shuffled pass of mini-batch SGD on the mean cross-entropy.

    Every sample is used exactly once: the permutation is padded to a whole number
    of batches and the padded slots get weight zero, so the last, partial batch is a
    mean over its real samples only.

    Parameters
    ----------
    params : list of (W, b)
        Network parameters (jax arrays).
    X : jax array of shape (n_samples, n_features)
    Y : jax array of shape (n_samples, n_classes)
        One-hot targets.
    key : jax PRNG key
        Draws this epoch's permutation.
    learning_rate : float
        Step size of each update.
    batch_size : int
        Static; clipped to ``n_samples``.
    mesh : jax.sharding.Mesh or None, default=None
        Static. With a mesh, each mini-batch is padded (weight 0) to a multiple of the
        number of devices and split over them: data-parallel SGD. ``X`` and ``Y`` are
        then expected replicated on every device.

    Returns
    -------
    params : list of (W, b)
        Parameters after ``ceil(n_samples / batch_size)`` updates.
    """
    n_samples = X.shape[0]
    batch_size = min(batch_size, n_samples)
    n_batches = n_batches_per_epoch(n_samples, batch_size)
    n_padded = n_batches * batch_size
    order = jax.random.permutation(key, n_samples)
    order = jnp.concatenate([order, jnp.zeros(n_padded - n_samples, order.dtype)])
    weights = (jnp.arange(n_padded) < n_samples).astype(X.dtype)
    order = order.reshape(n_batches, batch_size)
    weights = weights.reshape(n_batches, batch_size)
    split = padded_length(batch_size, mesh) - batch_size
    if split:
        order = jnp.pad(order, ((0, 0), (0, split)))
        weights = jnp.pad(weights, ((0, 0), (0, split)))
    grad_fn = jax.grad(_weighted_batch_loss)

    def step(params, batch):
        idx, w = batch
        Xb, Yb, w = (constrain_rows(a, mesh) for a in (X[idx], Y[idx], w))
        grads = grad_fn(params, Xb, Yb, w)
        params = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads)
        return params, None

    params, _ = jax.lax.scan(step, params, (order, weights))
    return params
