"""The multilayer perceptron: parameter initialisation and forward pass.

Parameters are a list of ``(W, b)`` pairs, ``W`` of shape ``(fan_in, fan_out)`` and
``b`` of shape ``(fan_out,)``, the layout of ``MLPClassifier.coefs_`` and
``intercepts_``. Every function here is pure. The losses on the network's outputs are
in :mod:`skntk._losses`.
"""

from numbers import Integral

import jax
import numpy as np

from ._activations import ACTIVATIONS, DEFAULT_ACTIVATION


def hidden_layer_widths(hidden_layer_sizes, owner=""):
    """``hidden_layer_sizes`` (an int: one layer) as a tuple of ints; a ``ValueError``
    naming the parameter (of ``owner``, e.g. ``"MLP"``, when given) otherwise."""
    sizes = hidden_layer_sizes
    sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
    if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
        of, example = ((f" of {owner}", f"{owner}(hidden_layer_sizes=(128, 128))") if owner
                       else ("", "hidden_layer_sizes=(128, 128)"))
        raise ValueError(
            f"`hidden_layer_sizes`{of} must be a tuple of positive integers; got "
            f"{hidden_layer_sizes!r}. For example {example}.")
    return tuple(int(s) for s in sizes)


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


def mlp_forward(params, X, activation=DEFAULT_ACTIVATION):
    """Outputs of the network (logits of a classifier), shape ``(n_samples, n_outputs)``:
    ``h_l = φ(h_{l-1} W_l + b_l)`` on the hidden layers, ``φ`` the ``activation``
    (:data:`skntk._activations.ACTIVATIONS`), and a linear output layer."""
    phi = ACTIVATIONS[activation].function
    h = X
    for W, b in params[:-1]:
        h = phi(h @ W + b)
    W, b = params[-1]
    return h @ W + b


def params_to_numpy(params):
    """Copy a parameter pytree (the MLP's list of ``(W, b)``, or any model's) to numpy."""
    return jax.tree.map(np.asarray, params)


def params_to_jax(params, dtype=None):
    """Put a parameter pytree on the default device as jax arrays (a plain transfer,
    which compiles nothing)."""
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a, dtype=dtype)), params)
