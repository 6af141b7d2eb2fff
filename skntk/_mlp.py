"""The multilayer perceptron: parameter initialisation, forward pass, losses.

Parameters are a list of ``(W, b)`` pairs, ``W`` of shape ``(fan_in, fan_out)`` and
``b`` of shape ``(fan_out,)``, the layout of ``MLPClassifier.coefs_`` and
``intercepts_``. Every function here is pure.
"""

import jax
import jax.numpy as jnp
import numpy as np


def init_mlp_params(layer_sizes, rng, dtype=np.float32):
    """Glorot-normal weights and zero biases.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_features, *hidden_layer_sizes, n_outputs)``.
    rng : numpy.random.RandomState
        Source of randomness.
    dtype : numpy dtype, default=numpy.float32

    Returns
    -------
    params : list of (ndarray, ndarray)
        ``W`` drawn from N(0, 2 / (fan_in + fan_out)) (Glorot and Bengio, AISTATS 2010,
        eq. 16, normal variant), ``b`` zeros.
    """
    params = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        std = np.sqrt(2.0 / (fan_in + fan_out))
        W = (rng.standard_normal((fan_in, fan_out)) * std).astype(dtype)
        params.append((W, np.zeros(fan_out, dtype=dtype)))
    return params


def mlp_forward(params, X):
    """Logits of the ReLU network, shape ``(n_samples, n_outputs)``."""
    h = X
    for W, b in params[:-1]:
        h = jax.nn.relu(h @ W + b)
    W, b = params[-1]
    return h @ W + b


def cross_entropy_per_sample(logits, Y):
    """Cross-entropy of softmax(logits) against one-hot ``Y``, shape ``(n_samples,)``."""
    return -jnp.sum(Y * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def weighted_mean(values, weights=None):
    """Mean of ``values`` (n,), or with ``weights`` (n,) (1 for real samples, 0 for the
    padding rows of a bucket) the weighted mean ``sum(w v) / sum(w)``."""
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(weights * values) / jnp.sum(weights)


def mean_cross_entropy(logits, Y, weights=None):
    """Mean cross-entropy over the samples (a scalar); see :func:`weighted_mean`."""
    return weighted_mean(cross_entropy_per_sample(logits, Y), weights)


def accuracy(logits, Y, weights=None):
    """Share of samples whose largest logit is the target class; see
    :func:`weighted_mean`."""
    correct = (jnp.argmax(logits, axis=-1) == jnp.argmax(Y, axis=-1)).astype(logits.dtype)
    return weighted_mean(correct, weights)


@jax.jit
def logits_loss_and_accuracy(logits, Y, weights=None):
    """Mean cross-entropy and accuracy of ``logits`` against one-hot ``Y``, jitted.

    ``weights`` (n,), optional: 1 for real samples, 0 for padding rows, which then
    count in neither (padding rows must have finite logits).
    """
    return mean_cross_entropy(logits, Y, weights), accuracy(logits, Y, weights)


@jax.jit
def loss_and_accuracy(params, X, Y, weights=None):
    """Mean cross-entropy and accuracy of the network on ``(X, Y)``, jitted; ``weights``
    as in :func:`logits_loss_and_accuracy`."""
    return logits_loss_and_accuracy(mlp_forward(params, X), Y, weights)


def params_to_numpy(params):
    """Copy a parameter list to numpy ``(W, b)`` tuples."""
    return [(np.asarray(W), np.asarray(b)) for W, b in params]


def params_to_jax(params, dtype=None):
    """Put a parameter list on the default device as jax arrays (a plain transfer, which
    compiles nothing)."""
    return [(jax.device_put(np.asarray(W, dtype=dtype)), jax.device_put(np.asarray(b, dtype=dtype)))
            for W, b in params]
