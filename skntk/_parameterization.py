"""Standard and NTK parameterisations of the MLP: per-layer scales of the trained
coordinates.

In the NTK parameterisation (Jacot, Gabriel and Hongler, NeurIPS 2018, "Neural
tangent kernel", section 2; Lee et al., NeurIPS 2019, "Wide neural networks of any
depth evolve as linear models under gradient descent", eq. (1); neural-tangents'
``stax.Dense(parameterization="ntk")``) layer ``l`` of fan-in ``n_{l-1}`` computes

    z_l = (sigma_w / sqrt(n_{l-1})) h_{l-1} omega_l + sigma_b beta_l,
    omega_l, beta_l ~ N(0, 1) at initialisation,

and gradient descent trains ``(omega, beta)``. With ``W_l = (sigma_w / sqrt(n_{l-1}))
omega_l`` and ``b_l = sigma_b beta_l`` the function is the same MLP
(:func:`skntk._mlp.mlp_forward` on ``(W, b)``), and by the chain rule

- a gradient step of size ``eta`` on ``(omega, beta)`` is the step on ``(W, b)`` with
  the gradient scaled by ``D``: ``W_l -= eta (sigma_w^2 / n_{l-1}) dL/dW_l`` and
  ``b_l -= eta sigma_b^2 dL/db_l``;
- the Jacobian in ``(omega, beta)`` is ``J D^{1/2}``, with ``J`` that in ``(W, b)``, so
  the NTK is ``J D J^T``;

``D`` being the diagonal that holds ``s_W,l = sigma_w^2 / n_{l-1}`` on the weights of
layer ``l`` and ``s_b,l = sigma_b^2`` on its biases. skntk therefore keeps every
parameter list in ``(W, b)`` (``coefs_``, ``intercepts_``, prediction unchanged) and
applies ``D``, one pair of numbers per layer (:func:`layer_scales`), where the
parameterisation matters: the SGD step, the kernels, the NTK phases' steps and their
ridge. The standard parameterisation is ``D = I``, written ``None`` so that its
compiled programs are exactly those without the scaling.

Constants: ``sigma_w = sqrt(2)`` on every layer, the ReLU gain of He et al. (ICCV
2015, "Delving deep into rectifiers", eq. (10)): it keeps the second moment of the
pre-activations from layer to layer, and of the logits too, since the output layer
also reads ReLU features. ``sigma_b = 0.1``: Jacot et al. introduce ``beta`` to
tune the influence of the bias and take ``beta = 0.1`` in their experiments.
neural-tangents leaves both to the user (``W_std=1``, no bias by default). The same
constants serve every ``activation``: ``D`` and the initial draw depend only on the
widths, and the activation travels with ``D`` (:class:`LayerScales`).
"""

import math

import jax
import numpy as np

from ._activations import DEFAULT_ACTIVATION, check_activation
from ._mlp import init_mlp_params

PARAMETERIZATIONS = ("standard", "ntk")
"""Values of the ``parameterization`` parameter."""

NTK_WEIGHT_STD = math.sqrt(2.0)
"""``sigma_w`` of the NTK parameterisation: the ReLU gain (He et al. 2015)."""

NTK_BIAS_STD = 0.1
"""``sigma_b`` of the NTK parameterisation (Jacot et al. 2018, ``beta = 0.1``)."""


def check_parameterization(parameterization):
    """``parameterization`` if it is one of :data:`PARAMETERIZATIONS`, else a
    ``ValueError``."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"`parameterization` must be 'standard' or 'ntk', got {parameterization!r}.")
    return parameterization


class LayerScales(tuple):
    """The diagonal ``D`` of a parameterisation, one ``(s_W,l, s_b,l)`` pair per layer,
    and the activation of the hidden layers it is the parameterisation of.

    A tuple of pairs (so it is read like the plain tuple of :func:`layer_scales`), with
    the attribute ``activation`` (a key of :data:`skntk._activations.ACTIVATIONS`):
    every function that applies ``D`` also runs the network, so the two travel as one
    static argument. Hashable, and equal only with the same pairs and activation, so
    that a jitted function compiles once per network. A pytree whose leaves are the
    scales and whose activation is static.
    """

    def __new__(cls, pairs, activation=DEFAULT_ACTIVATION):
        self = super().__new__(cls, (tuple(pair) for pair in pairs))
        self.activation = activation
        return self

    def __eq__(self, other):
        return (isinstance(other, LayerScales) and tuple.__eq__(self, other)
                and self.activation == other.activation)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((tuple(self), self.activation))

    def __reduce__(self):
        return LayerScales, (tuple(self), self.activation)

    def __repr__(self):
        return f"LayerScales({tuple(self)!r}, activation={self.activation!r})"


jax.tree_util.register_pytree_node(
    LayerScales, lambda scales: (tuple(scales), scales.activation),
    lambda activation, pairs: LayerScales(pairs, activation))


def layer_scales(layer_sizes, parameterization, activation=DEFAULT_ACTIVATION,
                 weight_std=NTK_WEIGHT_STD, bias_std=NTK_BIAS_STD):
    """The diagonal ``D`` of a parameterisation, one pair per layer, with the network's
    activation.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_features, *hidden_layer_sizes, n_outputs)``.
    parameterization : {"standard", "ntk"}
    activation : str, default="relu"
        The hidden layers' activation, a key of
        :data:`skntk._activations.ACTIVATIONS`.
    weight_std, bias_std : float
        ``sigma_w`` and ``sigma_b`` of ``"ntk"``.

    Returns
    -------
    scales : LayerScales or None
        ``None`` for ``"standard"`` with ``"relu"`` (``D = I``, the compiled programs
        without any scaling); otherwise per layer ``l`` the factors of the gradient of
        its weights and of its bias, ``(sigma_w^2 / n_{l-1}, sigma_b^2)`` for ``"ntk"``
        and ``(1.0, 1.0)`` for ``"standard"``. Python floats, hashable, so that jitted
        functions take them as a static argument.
    """
    check_parameterization(parameterization)
    check_activation(activation)
    if parameterization == "standard":
        if activation == DEFAULT_ACTIVATION:
            return None
        return LayerScales(((1.0, 1.0),) * (len(layer_sizes) - 1), activation)
    return LayerScales(((float(weight_std) ** 2 / int(fan_in), float(bias_std) ** 2)
                        for fan_in in layer_sizes[:-1]), activation)


def scale_params(params, scales, power=1.0):
    """Every ``(W_l, b_l)`` of ``params`` times ``(s_W,l ** power, s_b,l ** power)``.

    ``D`` itself with ``power=1`` (a gradient in ``(W, b)`` to the step direction of
    the NTK parameterisation), ``D^{1/2}`` with ``power=0.5`` (a direction in
    ``(omega, beta)`` to one in ``(W, b)``), ``D^{-1/2}`` with ``power=-0.5``.
    ``scales=None`` (standard) returns ``params`` unchanged, and so does a model
    (:mod:`skntk._network`: trained in its own coordinates). Traceable; the scales are
    Python floats, so the dtype of the leaves is kept.
    """
    if not isinstance(scales, LayerScales):
        return params
    if len(scales) != len(params):
        raise ValueError(f"{len(scales)} layer scales for {len(params)} layers.")
    return [(W * (s_w ** power), b * (s_b ** power))
            for (W, b), (s_w, s_b) in zip(params, scales)]


def init_params(layer_sizes, rng, parameterization="standard", dtype=np.float32,
                weight_std=NTK_WEIGHT_STD, bias_std=NTK_BIAS_STD):
    """Initial ``(W, b)`` of a parameterisation.

    ``"standard"``: :func:`skntk._mlp.init_mlp_params` (Glorot-normal weights, zero
    biases). ``"ntk"``: ``omega, beta ~ N(0, 1)``, returned as ``W_l = sigma_w
    omega_l / sqrt(n_{l-1})`` and ``b_l = sigma_b beta_l`` (per layer, the weights
    drawn first, then the bias).

    Returns
    -------
    params : list of (ndarray, ndarray)
        In ``dtype``.
    """
    check_parameterization(parameterization)
    if parameterization == "standard":
        return init_mlp_params(layer_sizes, rng, dtype)
    params = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        omega = rng.standard_normal((fan_in, fan_out))
        beta = rng.standard_normal(fan_out)
        params.append(((omega * (weight_std / np.sqrt(fan_in))).astype(dtype),
                       (beta * bias_std).astype(dtype)))
    return params
