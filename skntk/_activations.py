"""The hidden layers' activations of the MLP and their derivatives: one table, read by
every forward pass (:func:`skntk._mlp.mlp_forward`), the layer-wise kernel engine
(:mod:`skntk._kernel_engine`, whose back-propagated signals carry ``φ'(z)``) and the
cached Jacobian products of the linearised network (:mod:`skntk._linearized`).

Imports no other skntk module.
"""

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

DEFAULT_ACTIVATION = "relu"


class Activation(NamedTuple):
    """``function(z)`` and its derivative ``derivative(z)``, elementwise and traceable."""

    function: Callable
    derivative: Callable


def _relu_derivative(z):
    # relu'(0) = 0, as the gradient of jax.nn.relu.
    return (z > 0).astype(z.dtype)


def _tanh_derivative(z):
    return 1 - jnp.tanh(z) ** 2


def _erf_derivative(z):
    return (2 / math.sqrt(math.pi)) * jnp.exp(-z**2)


def _gelu(z):
    return jax.nn.gelu(z, approximate=False)


def _gelu_derivative(z):
    # d/dz [z Φ(z)] = Φ(z) + z φ(z).
    return 0.5 * (1 + erf(z / math.sqrt(2))) + z * jnp.exp(-z**2 / 2) / math.sqrt(2 * math.pi)


def _identity(z):
    return z


def _one(z):
    return jnp.ones_like(z)


ACTIVATIONS = {
    "relu": Activation(jax.nn.relu, _relu_derivative),
    "tanh": Activation(jnp.tanh, _tanh_derivative),
    "erf": Activation(erf, _erf_derivative),
    "gelu": Activation(_gelu, _gelu_derivative),
    "identity": Activation(_identity, _one),
}
"""Values of the ``activation`` parameter. ``"gelu"`` is the exact ``z Φ(z)``
(Hendrycks and Gimpel, 2016, "Gaussian error linear units"; ``jax.nn.gelu`` with
``approximate=False``), ``"erf"`` the error function, the activation for which the
infinite-width kernels have closed forms (Williams, NeurIPS 1996, "Computing with
infinite networks"), as has ``"relu"`` (Cho and Saul, NeurIPS 2009)."""


def check_activation(activation):
    """``activation`` if it is a key of :data:`ACTIVATIONS`, else a ``ValueError``."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {', '.join(map(repr, ACTIVATIONS))}; got "
            f"{activation!r}.")
    return activation


def activation_of(layer_scales):
    """The activation named by a parameterisation's scales
    (:class:`skntk._parameterization.LayerScales`); ``None``, the standard
    parameterisation of the ReLU network, names ``"relu"``."""
    return getattr(layer_scales, "activation", DEFAULT_ACTIVATION)
