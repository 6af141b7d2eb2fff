"""Models for the estimators' ``model`` parameter.

A model owns its configuration and gives ``init(key, n_features, n_outputs) -> params``
(a pytree of float32 arrays) and ``apply(params, X) -> outputs`` of shape
``(n_samples, n_outputs)`` (logits for the classifier), pure and traceable. Models are
scikit-learn estimators as far as parameters go: ``clone``, pickling and a grid over
``model__<option>`` work, and two equal models share their compiled programs.

- :class:`MLP`: the built-in network, trained with its layer-wise kernel engine;
- :class:`ConvNet`: a small convolutional network for images given as flat rows;
- :class:`FunctionModel`: a pure ``init``/``apply`` pair of the user's;
- :class:`FlaxModel`, :class:`EquinoxModel`: a flax linen module, an equinox module
  (optional extras: ``pip install "skntk[flax]"``, ``pip install "skntk[equinox]"``).

Every model other than the MLP goes through the generic path: Jacobian-vector and
vector-Jacobian products, NTK-vector products and kernel rows in blocks
(:mod:`skntk._model_kernel`), in the model's own coordinates (standard
parameterisation).
"""

import jax
import jax.numpy as jnp
import numpy as np

from ._activations import DEFAULT_ACTIVATION, check_activation
from ._convnet import ConvNet
from ._mlp import hidden_layer_widths, mlp_forward
from ._model import Model
from ._parameterization import check_parameterization, init_params

__all__ = ["Model", "MLP", "ConvNet", "FunctionModel", "FlaxModel", "EquinoxModel"]


class MLP(Model):
    """The built-in fully connected network, as the estimators build it by default.

    ``model=MLP(...)`` is the same fit as leaving ``model=None`` and passing these
    options to the estimator: the layer-wise kernel engine stays its fast path.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
        Width of each hidden layer (an int: one layer).
    activation : {"relu", "tanh", "erf", "gelu", "identity"}, default="relu"
        Activation of the hidden layers.
    parameterization : {"standard", "ntk"}, default="standard"
        Coordinates in which the network is trained (see the estimators).
    """

    def __init__(self, hidden_layer_sizes=(128, 128), activation=DEFAULT_ACTIVATION,
                 parameterization="standard"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.parameterization = parameterization

    def layer_widths(self):
        """``hidden_layer_sizes`` as a tuple of ints; a ``ValueError`` otherwise."""
        return hidden_layer_widths(self.hidden_layer_sizes, "MLP")

    def init(self, key, n_features, n_outputs):
        """The list of ``(W, b)`` of the parameterisation, drawn from a generator seeded
        by ``key``."""
        seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
        sizes = (n_features, *self.layer_widths(), n_outputs)
        params = init_params(sizes, np.random.RandomState(seed),
                             check_parameterization(self.parameterization))
        return [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]

    def apply(self, params, X):
        return mlp_forward(params, X, check_activation(self.activation))


class FunctionModel(Model):
    """A model given by two pure functions.

    Parameters
    ----------
    init : callable
        ``init(key, n_features, n_outputs) -> params``: ``key`` a
        ``jax.random.PRNGKey``, ``params`` a pytree of floating arrays (cast to float32).
    apply : callable
        ``apply(params, X) -> outputs``: ``X`` of shape ``(n_samples, n_features)``
        float32, outputs of shape ``(n_samples, n_outputs)``; pure and jittable.

    Notes
    -----
    The functions are part of the model's identity (its hash and its compiled
    programs): module-level functions let it pickle and share compiled programs
    between clones; a lambda works but neither pickles nor is shared.
    """

    def __init__(self, init, apply):
        self.init = init
        self.apply = apply


class FlaxModel(Model):
    """A flax linen module as a model: ``module.init(key, x)`` and ``module.apply``.

    Parameters
    ----------
    module : flax.linen.Module
        Maps ``(n_samples, n_features)`` float32 inputs to ``(n_samples, n_outputs)``
        outputs; its last layer must have as many outputs as the estimator needs (one
        per class, or per target). The model's options are the module's own fields,
        which a grid may search through ``set_params(model__module=...)``.

    Raises
    ------
    ImportError
        At ``init`` when flax is not installed: ``pip install "skntk[flax]"``.
    """

    def __init__(self, module):
        self.module = module

    def init(self, key, n_features, n_outputs):
        _require("flax")
        return self.module.init(key, jnp.zeros((1, n_features), jnp.float32))

    def apply(self, params, X):
        return self.module.apply(params, X)


class EquinoxModel(Model):
    """An equinox module as a model.

    Parameters
    ----------
    make : callable
        ``make(key, n_features, n_outputs) -> eqx.Module``, a module-level function (it
        is part of the model's identity) whose module maps one row of shape
        ``(n_features,)`` to ``(n_outputs,)`` (equinox's convention; the model maps it
        over the rows).

    Notes
    -----
    The parameters are the module's floating arrays (``eqx.partition`` with
    ``eqx.is_inexact_array``) and an empty ``(0, n_outputs)`` array that records the
    number of outputs, from which ``apply`` rebuilds the rest of the module (its static
    part, by ``make`` under ``jax.eval_shape``, which allocates nothing).

    Raises
    ------
    ImportError
        At ``init`` when equinox is not installed: ``pip install "skntk[equinox]"``.
    """

    def __init__(self, make):
        self.make = make

    def init(self, key, n_features, n_outputs):
        eqx = _require("equinox")
        arrays, _ = eqx.partition(self.make(key, n_features, n_outputs), eqx.is_inexact_array)
        return {"module": arrays, "outputs": jnp.zeros((0, n_outputs), jnp.float32)}

    def apply(self, params, X):
        eqx = _require("equinox")
        n_features, n_outputs = X.shape[1], params["outputs"].shape[1]
        shapes = eqx.filter_eval_shape(self.make, jax.random.PRNGKey(0), n_features,
                                       n_outputs)
        _, static = eqx.partition(shapes, eqx.is_inexact_array)
        module = eqx.combine(params["module"], static)
        return jax.vmap(module)(X)


def _require(name):
    """Import the optional dependency ``name``, or raise an ImportError that says how to
    install it."""
    try:
        return __import__(name)
    except ImportError as error:
        raise ImportError(
            f"This model needs {name}, an optional dependency of skntk: install it with "
            f"pip install \"skntk[{name}]\".") from error
