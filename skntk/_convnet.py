"""A small convolutional network for images given as flat rows: the model behind
:class:`skntk.models.ConvNet`.

ReLU convolutions (NHWC, ``jax.lax.conv_general_dilated``, "SAME" padding, a stride
per layer) followed by a dense head; its kernel goes through the generic path
(:mod:`skntk._model_kernel`). Equality, hashing and the pytree registration come
from :class:`skntk._model.Model`.
"""

import math
from numbers import Integral

import jax
import jax.numpy as jnp
from jax import lax

from ._model import Model

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _int_tuple(value, name, length=None):
    """``value`` (an int or a sequence of ints >= 1) as a tuple; a clear error if not."""
    values = (value,) if isinstance(value, (Integral, float, str)) else tuple(value)
    if (not values or not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1
                              for v in values)
            or (length is not None and len(values) not in length)):
        expected = ("an int >= 1 or a non-empty tuple of ints >= 1" if length is None
                    else "an int >= 1" if length == (1,)
                    else f"a tuple of {' or '.join(map(str, length))} ints >= 1")
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    return tuple(int(v) for v in values)


def _normal(key, shape, std):
    return std * jax.random.normal(key, shape, dtype=jnp.float32)


class ConvNet(Model):
    """A small convolutional network on images given as flat rows.

    Each row of ``X`` is one image flattened in (height, width, channels) order, as
    ``images.reshape(n, -1)`` gives for an array of shape ``(n, height, width)`` or
    ``(n, height, width, channels)``. The network is ``len(channels)`` ReLU
    convolutions of ``kernel_size × kernel_size`` windows ("SAME" padding, stride
    ``stride``, each halving the height and width for ``stride=2``), then the flattened
    feature maps through ReLU dense layers of ``dense_layer_sizes`` and a linear
    readout of ``n_outputs`` (the logits of a classifier).

    Parameters
    ----------
    image_shape : tuple of int, default=(28, 28, 1)
        ``(height, width)`` or ``(height, width, channels)`` of one image; their
        product must equal the number of features of ``X``.
    channels : int or tuple of int, default=(8, 16, 32)
        Output channels of each convolution, one entry per convolutional layer.
    kernel_size : int, default=3
        Height and width of every convolution window.
    stride : int, default=2
        Step of every convolution along height and width.
    dense_layer_sizes : tuple of int, default=()
        Widths of the ReLU dense layers between the convolutions and the readout;
        ``()``: the readout acts on the flattened feature maps directly.

    See Also
    --------
    skntk.models.MLP : the fully connected network, the estimators' default.
    skntk.datasets.load_mnist_subset : 5000 MNIST digits of 28×28 pixels, offline.

    Notes
    -----
    Initialisation (He et al., ICCV 2015; Glorot and Bengio, AISTATS 2010): each
    layer followed by a ReLU draws its weights from ``N(0, 2 / fan_in)``, the readout
    from ``N(0, 2 / (fan_in + fan_out))``, with ``fan_in`` the window size times the
    input channels for a convolution; biases are zero. Parameters are the pytree
    ``{"conv": [(W, b), ...], "dense": [(W, b), ...]}``, ``W`` of shape
    ``(kernel_size, kernel_size, in, out)`` (HWIO) for a convolution and
    ``(fan_in, fan_out)`` for a dense layer, all float32. Its NTK is computed by the
    generic path (Jacobian tiles or NTK-vector products, :func:`skntk.ntk.model_ntk`).

    Examples
    --------
    >>> import jax
    >>> import numpy as np
    >>> from skntk.models import ConvNet
    >>> model = ConvNet(image_shape=(8, 8), channels=(4,))
    >>> params = model.init(jax.random.PRNGKey(0), n_features=64, n_outputs=10)
    >>> model.apply(params, np.zeros((5, 64), np.float32)).shape
    (5, 10)
    """

    def __init__(self, image_shape=(28, 28, 1), channels=(8, 16, 32), kernel_size=3, stride=2,
                 dense_layer_sizes=()):
        self.image_shape = image_shape
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dense_layer_sizes = dense_layer_sizes

    def _image(self):
        """``(height, width, channels)`` from ``image_shape``, validated."""
        shape = _int_tuple(self.image_shape, "image_shape", length=(2, 3))
        return shape if len(shape) == 3 else (*shape, 1)

    def _layers(self):
        """Validated ``(image, channels, kernel_size, stride, dense_layer_sizes)``."""
        dense = self.dense_layer_sizes
        empty = dense is None or (not isinstance(dense, Integral) and len(dense) == 0)
        dense = () if empty else _int_tuple(dense, "dense_layer_sizes")
        (kernel_size,) = _int_tuple(self.kernel_size, "kernel_size", length=(1,))
        (stride,) = _int_tuple(self.stride, "stride", length=(1,))
        return (self._image(), _int_tuple(self.channels, "channels"), kernel_size, stride,
                dense)

    def init(self, key, n_features, n_outputs):
        """Draw the parameters.

        Parameters
        ----------
        key : jax.random.PRNGKey
            Random key; the same key gives the same parameters.
        n_features : int
            Features of one row of ``X``; must equal the product of ``image_shape``.
        n_outputs : int
            Outputs of the readout (classes of a classifier, targets of a regressor).

        Returns
        -------
        params : dict
            ``{"conv": [(W, b), ...], "dense": [(W, b), ...]}`` of float32 arrays.

        Raises
        ------
        ValueError
            If ``n_features`` differs from the number of pixels of ``image_shape``, or
            an option is not a positive int (or tuple of them).
        """
        (height, width, in_channels), channels, size, stride, dense = self._layers()
        if n_features != height * width * in_channels:
            raise ValueError(
                f"ConvNet(image_shape={self.image_shape!r}) takes rows of "
                f"{height * width * in_channels} features (height x width x channels), "
                f"got {n_features}; pass the `image_shape` of the flattened images.")
        keys = iter(jax.random.split(key, len(channels) + len(dense) + 1))
        conv = []
        for out in channels:
            fan_in = size * size * in_channels
            conv.append((_normal(next(keys), (size, size, in_channels, out),
                                 math.sqrt(2 / fan_in)),
                         jnp.zeros(out, jnp.float32)))
            in_channels = out
            height, width = -(-height // stride), -(-width // stride)
        fan_in, layers = height * width * in_channels, []
        for out in dense:
            layers.append((_normal(next(keys), (fan_in, out), math.sqrt(2 / fan_in)),
                           jnp.zeros(out, jnp.float32)))
            fan_in = out
        layers.append((_normal(next(keys), (fan_in, n_outputs),
                               math.sqrt(2 / (fan_in + n_outputs))),
                       jnp.zeros(n_outputs, jnp.float32)))
        return {"conv": conv, "dense": layers}

    def apply(self, params, X):
        """Outputs of the network, pure and traceable.

        Parameters
        ----------
        params : dict
            As :meth:`init` returns.
        X : array of shape (n_samples, n_features)
            Flattened images, float.

        Returns
        -------
        outputs : jax.Array of shape (n_samples, n_outputs)
            Logits (or regression outputs), in the dtype of ``X`` and ``params``.
        """
        height, width, in_channels = self._image()
        stride = int(self.stride)
        Z = jnp.reshape(X, (X.shape[0], height, width, in_channels))
        for W, b in params["conv"]:
            Z = lax.conv_general_dilated(Z, W, window_strides=(stride, stride),
                                         padding="SAME", dimension_numbers=_DIMENSIONS)
            Z = jax.nn.relu(Z + b)
        Z = Z.reshape(Z.shape[0], -1)
        *hidden, (W_out, b_out) = params["dense"]
        for W, b in hidden:
            Z = jax.nn.relu(Z @ W + b)
        return Z @ W_out + b_out
