"""What every model is: an estimator-like object that owns its configuration, with
``init(key, n_features, n_outputs) -> params`` and ``apply(params, X) -> outputs``.

A model is a :class:`sklearn.base.BaseEstimator` (``get_params``, ``set_params``,
``clone`` and a grid over ``model__<option>`` work), equal to another of its type with
the same parameters and hashed alike, so that it is a static argument of the compiled
programs and two equal models share them. It is registered as a pytree without leaves
(``jax.tree_util.register_static``), so that it may travel inside the records of the
NTK phases through ``jax.jit``.
"""

import jax
import jax.numpy as jnp
from sklearn.base import BaseEstimator


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


class Model(BaseEstimator):
    """Base of the models: subclasses define ``__init__`` (storing their options, as
    scikit-learn estimators do), :meth:`init` and :meth:`apply`."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_static(cls)

    def _identity(self):
        items = sorted(self.get_params(deep=False).items())
        return type(self), tuple((name, _hashable(value)) for name, value in items)

    def __eq__(self, other):
        return type(self) is type(other) and self._identity() == other._identity()

    def __hash__(self):
        return hash(self._identity())

    def __call__(self, params, X):
        return self.apply(params, X)

    def init(self, key, n_features, n_outputs):
        """Initial parameters: a pytree of float32 arrays."""
        raise NotImplementedError

    def apply(self, params, X):
        """Outputs of shape ``(n_samples, n_outputs)`` on ``X`` of shape
        ``(n_samples, n_features)``; pure and traceable."""
        raise NotImplementedError


def initial_params(model, seed, n_features, n_outputs):
    """``model.init`` from an integer ``seed``, as float32 jax arrays, after checking
    that ``apply`` maps ``(1, n_features)`` inputs to ``(1, n_outputs)`` outputs.

    Raises
    ------
    ValueError
        If the parameters are not floating arrays or the outputs have another shape.
    """
    name = type(model).__name__
    params = model.init(jax.random.PRNGKey(seed), n_features, n_outputs)
    leaves = jax.tree.leaves(params)
    if not leaves or not all(jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                             for a in leaves):
        dtypes = jax.tree.map(lambda a: getattr(a, "dtype", a), params)
        raise ValueError(
            f"`model.init` of {name} must return a pytree of floating-point arrays (the "
            f"trained parameters); got {dtypes}.")
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    shape = jax.eval_shape(model.apply, params,
                           jax.ShapeDtypeStruct((1, n_features), jnp.float32)).shape
    if shape != (1, n_outputs):
        raise ValueError(
            f"`model.apply` of {name} maps inputs of shape (1, {n_features}) to outputs of "
            f"shape {shape}; the estimator needs (1, {n_outputs}): one output per class "
            f"(classifier) or target (regressor). Give the model's last layer "
            f"{n_outputs} outputs (`init` receives n_outputs={n_outputs}).")
    return params

