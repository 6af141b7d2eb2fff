"""Module-level models for the tests (pickle and share compiled programs)."""

import jax
import jax.numpy as jnp
import numpy as np

from skntk._mlp import init_mlp_params, mlp_forward


def init_two_layer(key, n_features, n_outputs):
    """A 16-unit hidden layer, weights of variance 1 / fan_in, zero biases."""
    k1, k2 = jax.random.split(key)
    return {"hidden": {"W": jax.random.normal(k1, (n_features, 16)) / np.sqrt(n_features),
                       "b": jnp.zeros(16)},
            "out": {"W": jax.random.normal(k2, (16, n_outputs)) / 4.0, "b": jnp.zeros(n_outputs)}}


def apply_tanh(params, X):
    h = jnp.tanh(X @ params["hidden"]["W"] + params["hidden"]["b"])
    return h @ params["out"]["W"] + params["out"]["b"]


def apply_relu(params, X):
    h = jax.nn.relu(X @ params["hidden"]["W"] + params["hidden"]["b"])
    return h @ params["out"]["W"] + params["out"]["b"]


def apply_relu_mlp(params, X):
    """The built-in ReLU MLP's forward pass on its list of ``(W, b)``."""
    return mlp_forward(params, X, "relu")


def apply_tanh_mlp(params, X):
    return mlp_forward(params, X, "tanh")


FIXED_PARAMS = []
"""The parameters :func:`init_fixed` returns (set by a test)."""


def init_fixed(key, n_features, n_outputs):
    return FIXED_PARAMS[0]


def make_equinox_8(key, n_features, n_outputs):
    import equinox as eqx
    return eqx.nn.MLP(n_features, n_outputs, 8, 1, activation=jnp.tanh, key=key)


def make_equinox_16(key, n_features, n_outputs):
    import equinox as eqx
    return eqx.nn.MLP(n_features, n_outputs, 16, 1, activation=jnp.tanh, key=key)


class TwoLayerObject:
    """Not a skntk model: an object with the two methods of :func:`init_two_layer` and
    :func:`apply_tanh`."""

    def init(self, key, n_features, n_outputs):
        return init_two_layer(key, n_features, n_outputs)

    def apply(self, params, X):
        return apply_tanh(params, X)


def mlp_problem(sizes, n1, n2, dtype, seed=0):
    """An MLP of layer ``sizes`` (Glorot weights, biases of scale 0.2) and two input
    sets of ``n1`` and ``n2`` Gaussian rows, in ``dtype``."""
    rng = np.random.RandomState(seed)
    params = [(jnp.asarray(W, dtype), jnp.asarray(0.2 * rng.standard_normal(b.shape), dtype))
              for W, b in init_mlp_params(sizes, rng, dtype=np.float64)]
    X1 = jnp.asarray(rng.standard_normal((n1, sizes[0])), dtype)
    X2 = jnp.asarray(rng.standard_normal((n2, sizes[0])), dtype)
    return params, X1, X2


def rel_error(A, B):
    """``||A - B||_F / ||B||_F`` in float64."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    return np.linalg.norm(A - B) / np.linalg.norm(B)
