"""The network that a fit trains, as the static argument every step and kernel takes.

It is one of

- ``None``: the built-in MLP, ReLU, standard parameterisation;
- a :class:`skntk._parameterization.LayerScales`: the built-in MLP with the per-layer
  scales ``D`` of its parameterisation and its activation;
- a model (:class:`skntk._model.Model`): the user's ``init``/``apply`` pair, trained in
  its own coordinates (``D = I``).

The MLP keeps its layer-wise engine (:mod:`skntk._kernel_engine`, the cached Jacobian
products of :mod:`skntk._linearized`); a model goes through automatic differentiation
(:mod:`skntk._model_kernel`).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import activation_of
from ._kernel_engine import layer_sizes
from ._mlp import mlp_forward
from ._model_kernel import n_parameters
from ._parameterization import LayerScales


def is_mlp(network):
    """Whether ``network`` is the built-in MLP (its layer scales or ``None``)."""
    return network is None or isinstance(network, LayerScales)


def forward(network, params, X):
    """Outputs ``(n, C)`` of ``network`` with ``params`` on ``X``; traceable."""
    if is_mlp(network):
        return mlp_forward(params, X, activation_of(network))
    return network.apply(params, X)


def weight_penalty(network, params):
    """``Σ ||W||²`` of the ``alpha`` penalty: the MLP's weights (not its biases, as in
    ``MLPClassifier``); every parameter of a model, which does not say which are
    biases."""
    if is_mlp(network):
        return sum(jnp.sum(W ** 2) for W, _ in params)
    return sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(params))


MODEL_BLOCK_SIZE = 64
"""Rows per block of a model's Jacobian tiles (:func:`skntk.ntk.model_ntk`'s default)."""


MODEL_PRODUCT_BLOCK = 256
"""Rows per pass of a model's NTK-vector products (pull-back and push-forward of
:mod:`skntk._model_kernel`)."""


class ModelSize(NamedTuple):
    """What the memory checks know of a model, in place of the MLP's layer sizes: its
    number of parameters ``P`` and of outputs ``C`` (``sizes[-1]``, as for the MLP)."""

    n_parameters: int
    n_outputs: int


def network_sizes(network, params, n_features):
    """The MLP's ``(n_features, *hidden_layer_sizes, n_outputs)``, or a model's
    :class:`ModelSize`."""
    if is_mlp(network):
        return layer_sizes(params)
    outputs = jax.eval_shape(network.apply, params,
                             jax.ShapeDtypeStruct((1, n_features), jnp.float32))
    return ModelSize(n_parameters(params), int(outputs.shape[1]))


def model_working_bytes(sizes, n_rows, n_cols, itemsize):
    """Working memory of a model's kernel tiles beside the kernel: the per-sample
    Jacobians of one row block and one column block of :data:`MODEL_BLOCK_SIZE` rows
    (``b · C · P`` floats each) and as much again for their temporaries."""
    rows = min(MODEL_BLOCK_SIZE, n_rows) + min(MODEL_BLOCK_SIZE, n_cols)
    return 2 * itemsize * rows * sizes.n_outputs * sizes.n_parameters


def model_gram_bytes(sizes, n_rows, itemsize):
    """Working memory of a model's kernel of ``n_rows`` inputs with themselves in one
    Jacobian contraction (the monitor kernel): the per-sample Jacobians of every row,
    twice over with their temporaries."""
    return 2 * itemsize * n_rows * sizes.n_outputs * sizes.n_parameters
