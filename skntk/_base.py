"""What the estimators share: parameters, the fit around the trainer, prediction.

:class:`BaseHybridNTK` holds everything but the target: a subclass gives its loss
(:mod:`skntk._losses`), how its targets are checked, encoded and split, and how the
model's outputs become predictions (a softmax for the classifier, the identity for the
regressor). Nothing else in the package knows which estimator it serves.
"""

import math
from numbers import Integral, Real

import jax
import numpy as np
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.utils import check_array, check_random_state
from sklearn.utils._available_if import _AvailableIfDescriptor
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._activations import ACTIVATIONS, check_activation
from ._buckets import pad_rows
from ._devices import devices_from_state, devices_to_state
from ._mlp import hidden_layer_widths, params_to_jax
from ._parameterization import PARAMETERIZATIONS, check_parameterization, layer_scales
from .models import MLP, FunctionModel, Model
from ._phases import NTK_PHASES
from ._runtime import check_not_forked, uses_program_cache
from ._switch import SWITCH_CRITERIA
from ._training import COMPUTE_DTYPE, PREDICT_BLOCK, TrainingConfig, fit_hybrid
from ._weights import canonical_rows
from ._validation import FLOAT32_MAX, check_float32_range, python_scalars, refuse_sparse

_COMMON_FITTED_ATTRIBUTES = (
    "coefs_", "intercepts_", "switch_coefs_", "switch_intercepts_", "init_coefs_",
    "init_intercepts_", "monitor_indices_", "history_",
    "loss_curve_", "switch_epoch_", "switch_threshold_", "switch_reached_",
    "switch_attempts_", "switch_epochs_", "n_iter_",
    "sgd_time_", "ntk_time_", "learning_rate_", "ntk_learning_rate_", "ntk_solver_", "ntk_stop_reason_",
    "ntk_best_epoch_", "kernel_solver_", "kernel_solver_info_", "parameterization_",
    "activation_",
    "n_features_in_", "feature_names_in_", "ntk_phase_", "switch_",
    "params_", "switch_params_", "init_params_", "model_",
)

_MLP_ONLY_ATTRIBUTES = ("coefs_", "intercepts_", "switch_coefs_", "switch_intercepts_",
                        "init_coefs_", "init_intercepts_", "parameterization_",
                        "activation_")
"""Fitted attributes of the built-in MLP; a fit on the user's model has ``params_``,
``switch_params_`` and ``init_params_`` instead."""


class _AvailableWithReason(_AvailableIfDescriptor):
    """``available_if`` whose ``AttributeError`` carries the check's own message
    (scikit-learn's raises a generic one, with the message only as its cause)."""

    def _check(self, obj, owner):
        try:
            available = self.check(obj)
        except AttributeError as error:
            raise AttributeError(str(error)) from None
        if not available:
            raise AttributeError(f"This {owner.__name__!r} has no attribute "
                                 f"{self.attribute_name!r}")


def available_with_reason(check):
    """A method that exists when ``check(self)`` is true, as scikit-learn's
    ``available_if`` (``hasattr`` is False otherwise); calling or getting it when
    ``check`` raises an ``AttributeError`` raises one with the same message."""
    return lambda fn: _AvailableWithReason(fn, check, attribute_name=fn.__name__)


def _all_phase_attributes():
    names = set()
    for phase in NTK_PHASES.values():
        for variant in {phase.variant(s, k) for s in ("gd", "lbfgs", None)
                        for k in ("dense", "matrix_free", None)}:
            names.update(variant.fitted_attributes)
    return tuple(sorted(names))


class WarmStartRefused(ValueError):
    """``warm_start=True`` cannot continue the fitted network (other targets, features
    or layer sizes): refused before any training, leaving the fitted model as it was."""


class BaseHybridNTK(BaseEstimator):
    """Base of :class:`~skntk.HybridNTKClassifier` and :class:`~skntk.HybridNTKRegressor`.

    Not an estimator on its own: a subclass sets :attr:`_loss` and implements
    :meth:`_prepare_targets` (checks, encoding, validation split) and its prediction
    methods from :meth:`_outputs`.
    """

    _loss = None
    """The :class:`skntk._losses.Loss` of the subclass."""

    _target_attributes = ()
    """Fitted attributes that describe the targets (``classes_``, ``n_outputs_``)."""

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "parameterization": [StrOptions(set(PARAMETERIZATIONS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "solver": [StrOptions({"sgd", "adam"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_sgd_epochs": [Interval(Integral, 0, None, closed="left")],
        "switch": [StrOptions(set(c for c in SWITCH_CRITERIA if c is not None)), None],
        "switch_window": [Interval(Integral, 1, None, closed="left")],
        "switch_threshold": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "switch_epoch": [Interval(Integral, 1, None, closed="left")],
        "ntk_monitor_size": [Interval(Integral, 2, None, closed="left")],
        "ntk_phase": [StrOptions(set(p for p in NTK_PHASES if p is not None)), None],
        "ntk_epochs": [Interval(Real, 0, None, closed="both"), StrOptions({"auto"})],
        "ntk_learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "ntk_solver": [StrOptions({"auto", "lbfgs", "gd"})],
        "ntk_tol": [Interval(Real, 0, None, closed="left")],
        "ntk_patience": [Interval(Integral, 1, None, closed="left")],
        "ntk_ridge": [Interval(Real, 0, None, closed="left")],
        "kernel_ridge": [Interval(Real, 0, None, closed="left")],
        "kernel_solver": [StrOptions({"auto", "dense", "matrix_free"})],
        "kernel_offset": [StrOptions({"zero", "network"})],
        "kernel_tol": [Interval(Real, 0, None, closed="neither")],
        "kernel_max_iter": [Interval(Integral, 1, None, closed="left")],
        "max_kernel_bytes": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left"), None],
        "devices": [None, Interval(Integral, 1, None, closed="left"), list],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "kernel_diagnostics": ["boolean"],
        "callbacks": [None, callable, list, tuple],
        "warm_start": ["boolean"],
        "model": [None, HasMethods(["init", "apply"])],
    }

    # ------------------------------------------------------------------ fit

    @uses_program_cache
    def _fit_clearing_state(self, X, y, X_val, y_val, coef_init, intercept_init,
                            sample_weight=None):
        """:meth:`fit`: clears any earlier fitted state (keeping, under
        ``warm_start=True``, its network as the starting point), fits, and leaves the
        estimator unfitted if the fit fails."""
        fitted = previous = None
        if self.warm_start is True and self.__sklearn_is_fitted__():
            network = ((self.params_, None) if "params_" in self.__dict__
                       else (self.coefs_, self.intercepts_))
            targets = {name: getattr(self, name) for name in self._target_attributes}
            fitted = (*network, targets)
            previous = {name: self.__dict__[name] for name in self._fitted_attribute_names()
                        if name in self.__dict__}
        self._clear_fitted_state()
        try:
            start = self._starting_network(coef_init, intercept_init, fitted)
            return self._fit(X, y, X_val, y_val, start, sample_weight)
        except BaseException as error:
            self._clear_fitted_state()
            if isinstance(error, WarmStartRefused):
                # Refused before any training, as MLPClassifier: the fitted model stays.
                self.__dict__.update(previous)
            raise

    @classmethod
    def _fitted_attribute_names(cls):
        return (*_COMMON_FITTED_ATTRIBUTES, *cls._target_attributes, *_all_phase_attributes())

    def _clear_fitted_state(self):
        for name in self._fitted_attribute_names():
            self.__dict__.pop(name, None)

    @staticmethod
    def _starting_network(coef_init, intercept_init, fitted):
        """``(coefs, intercepts, source, fitted target attributes or None)`` to start
        from (float32 copies), or ``None`` for the random draw; ``fitted``: the network
        and target attributes of the previous fit under ``warm_start=True``, else
        ``None``."""
        if (coef_init is None) != (intercept_init is None):
            raise ValueError("Pass both `coef_init` and `intercept_init`, or neither.")
        fitted_targets = None
        if coef_init is not None:
            source = "`coef_init`/`intercept_init`"
        elif fitted is not None:
            coef_init, intercept_init, fitted_targets = fitted
            source = "the fitted network (warm_start=True)"
            if intercept_init is None:  # a user model's params_
                return coef_init, None, source, fitted_targets
        else:
            return None
        if not all(isinstance(v, (list, tuple)) for v in (coef_init, intercept_init)):
            raise ValueError(
                f"{source} must be lists with one array per layer (weights of shape "
                f"(fan_in, fan_out), biases of shape (fan_out,)); got "
                f"{type(coef_init).__name__} and {type(intercept_init).__name__}. For one "
                f"layer, pass [W] and [b].")
        try:
            coefs = [np.array(W, dtype=COMPUTE_DTYPE) for W in coef_init]
            intercepts = [np.array(b, dtype=COMPUTE_DTYPE) for b in intercept_init]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source} must be lists of numeric arrays, one per layer: "
                             f"{error}") from error
        return coefs, intercepts, source, fitted_targets

    def _check_warm_start_targets(self, fitted_targets, targets):
        """Refuse to continue a network fitted for other targets (``warm_start``)."""
        for name, old in fitted_targets.items():
            new = targets[name]
            if not np.array_equal(old, new):
                show = (lambda v: np.asarray(v)[:10].tolist()) if np.ndim(old) else repr
                raise WarmStartRefused(
                    f"warm_start=True continues the fitted network, whose {name} is "
                    f"{show(old)}, but `y` gives {show(new)}. Set warm_start=False to "
                    f"start from a new network.")

    def _check_starting_network(self, start, layer_sizes, targets):
        coefs, intercepts, source, fitted_targets = start
        if fitted_targets is not None:
            self._check_warm_start_targets(fitted_targets, targets)
        if intercepts is None:
            raise WarmStartRefused(
                f"warm_start=True continues {source}, the parameters of a user model, "
                f"which the built-in MLP cannot start from. Set warm_start=False to start "
                f"from a new network.")
        expected_W = [(a, b) for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
        shapes_W = [W.shape for W in coefs]
        shapes_b = [b.shape for b in intercepts]
        if shapes_W != expected_W or shapes_b != [(b,) for _, b in expected_W]:
            fix = ("Keep the features and `hidden_layer_sizes` of the fitted network, or "
                   "set warm_start=False to start from a new one."
                   if fitted_targets is not None else "Pass a network of these sizes.")
            raise (ValueError if fitted_targets is None else WarmStartRefused)(
                f"{source} has weight shapes {shapes_W} and bias shapes {shapes_b}, but "
                f"the network for this data has layer sizes {layer_sizes} (n_features, "
                f"*hidden_layer_sizes, n_outputs): weights {expected_W}. {fix}")
        if not all(np.isfinite(a).all() for a in coefs + intercepts):
            raise ValueError(f"{source} holds NaN or infinite values; pass finite weights.")
        return list(zip(coefs, intercepts))

    def _check_validation_inputs(self, X_val):
        """``X_val`` checked like ``X`` and against its features, as a float array."""
        refuse_sparse(X_val, "X_val", type(self).__name__)
        X_checked = check_array(X_val, dtype=[np.float64, np.float32], estimator=self,
                                input_name="X_val")
        if X_checked.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`X_val` has {X_checked.shape[1]} features, but `X` has "
                f"{self.n_features_in_}. Pass validation inputs with the columns of `X`.")
        # Feature names of a DataFrame X_val must match those of X.
        validate_data(self, X_val, reset=False, skip_check_array=True)
        check_float32_range(X_checked, "X_val")
        return X_checked

    def _prepare_targets(self, X, y, X_val, y_val, rng, sample_weight=None):
        """Check ``X``, ``y`` and ``sample_weight``, bring the rows to their canonical
        form (:mod:`skntk._weights`), split off the validation rows and encode the
        targets for the loss. Returns ``(X, Y, X_val, Y_val, train_rows, targets,
        weights, val_weights)``: float32 copies, ``Y`` of shape (n, C), the rows of
        ``X`` that form the training part, the fitted target attributes (a dict), and
        the weights of the training and validation rows (``None``: 1 each)."""
        raise NotImplementedError

    @staticmethod
    def _canonical(X, targets, sample_weight, kept=None):
        """``X``, ``targets``, their rows in the original data and their weights, in the
        canonical form of :func:`skntk._weights.canonical_rows`; ``kept``: the rows of
        the original data that ``X`` holds (``None``: all)."""
        rows, weights = canonical_rows(X, targets, sample_weight)
        if rows.size != X.shape[0] or np.any(rows != np.arange(X.shape[0])):
            X, targets = X[rows], targets[rows]
        original = rows if kept is None else kept[rows]
        return X, targets, original, weights

    @_fit_context(prefer_skip_nested_validation=True)
    def _fit(self, X, y, X_val, y_val, start=None, sample_weight=None):
        check_not_forked()
        if (X_val is None) != (y_val is None):
            raise ValueError(
                f"Pass both `X_val` and `y_val`, or neither; got only "
                f"{'`X_val`' if y_val is None else '`y_val`'}.")
        model, layers, activation, parameterization = self._resolved_model()
        self._check_ntk_epochs()
        refuse_sparse(X, "X", type(self).__name__)
        rng = check_random_state(self.random_state)
        X, Y, X_val, Y_val, train_rows, targets, weights, val_weights = self._prepare_targets(
            X, y, X_val, y_val, rng, sample_weight)
        init_params = None
        if start is not None and model is not None:
            init_params = self._check_starting_params(start, model, X.shape[1], Y.shape[1],
                                                      targets)
        elif start is not None:
            init_params = self._check_starting_network(
                start, (X.shape[1], *layers, Y.shape[1]), targets)
        callbacks = self._checked_callbacks()
        config = self._training_config(layers)._replace(
            model=model, activation=activation, parameterization=parameterization)
        fitted = fit_hybrid(config, X, Y, X_val, Y_val, rng, init_params, callbacks,
                            weights, val_weights)
        # Everything prediction needs is fitted state, so that set_params after fit
        # changes nothing until the next fit.
        fitted.update(
            monitor_indices_=np.sort(train_rows[fitted.pop("monitor_index")]),
            ntk_phase_=config.ntk_phase, switch_=config.switch, **targets)
        if model is None:
            fitted.update(parameterization_=config.parameterization,
                          activation_=config.activation)
        else:
            fitted.update(model_=clone(model))
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    def _checked_callbacks(self):
        callbacks = self.callbacks
        if callbacks is None:
            return ()
        if callable(callbacks):
            return (callbacks,)
        for index, callback in enumerate(callbacks):
            if not callable(callback):
                raise ValueError(
                    f"`callbacks` must be a callable or a list of callables, each "
                    f"taking one EpochInfo argument; item {index} is {callback!r}.")
        return tuple(callbacks)

    def _training_config(self, layers=None):
        """The :class:`skntk._training.TrainingConfig` of the current parameters.

        Numbers become plain Python ``int`` and ``float``
        (:func:`skntk._validation.python_scalars`): a ``numpy.float64`` step size would
        otherwise turn float32 parameters into float64 ones under JAX's 64-bit mode.
        """
        params = python_scalars(self.get_params(deep=False))
        threshold = params["switch_threshold"]
        params.update(
            hidden_layer_sizes=hidden_layer_widths(self.hidden_layer_sizes) if layers is None else layers,
            switch_threshold=None if threshold == "auto" else float(threshold))
        for name in ("learning_rate", "ntk_learning_rate", "ntk_tol", "ntk_ridge",
                     "kernel_ridge", "kernel_tol", "momentum", "alpha"):
            if not isinstance(params[name], str):
                params[name] = float(params[name])
        fields = {name: params[name] for name in TrainingConfig._fields if name in params}
        return TrainingConfig(loss=self._loss, **fields)

    def _resolved_model(self):
        """``(model, hidden_layer_sizes, activation, parameterization)`` of the fit:
        ``model`` ``None`` for the built-in MLP (from the estimator's options, or from
        an :class:`skntk.models.MLP` given as ``model``), else the user's model."""
        model = self.model
        if model is None:
            return (None, hidden_layer_widths(self.hidden_layer_sizes), self.activation,
                    self.parameterization)
        if isinstance(model, MLP):
            check_activation(model.activation)
            return (None, model.layer_widths(), model.activation,
                    check_parameterization(model.parameterization))
        if not isinstance(model, Model):
            # Any object with init and apply: the two bound methods as the model.
            model = FunctionModel(model.init, model.apply)
        if self.parameterization != "standard":
            raise ValueError(
                f"`parameterization` applies to the built-in MLP; a model given as `model` "
                f"({type(model).__name__}) is trained in its own coordinates, so "
                f"`parameterization` must be 'standard', got {self.parameterization!r}. "
                f"Write the NTK scaling into the model's `apply`, or pass "
                f"model=skntk.models.MLP(parameterization='ntk').")
        return model, (), self.activation, "standard"

    def _check_starting_params(self, start, model, n_features, n_outputs, targets):
        """The fitted ``params_`` of a user model to continue from (``warm_start``),
        after checking that they are parameters of ``model`` for this data."""
        params, intercepts, source, fitted_targets = start
        if fitted_targets is None:
            raise ValueError(
                "`coef_init` and `intercept_init` are the built-in MLP's weights; with a "
                "model given as `model`, training starts from its own `init` (fit with "
                "warm_start=True to continue a fit).")
        self._check_warm_start_targets(fitted_targets, targets)
        expected = model.init(jax.random.PRNGKey(0), n_features, n_outputs)
        shapes = [np.shape(a) for a in jax.tree.leaves(expected)]
        if (intercepts is not None
                or jax.tree.structure(params) != jax.tree.structure(expected)
                or [np.shape(a) for a in jax.tree.leaves(params)] != shapes):
            raise WarmStartRefused(
                f"warm_start=True continues {source}, but its parameters are not those of "
                f"the model {type(model).__name__} for this data (parameter shapes "
                f"{shapes}). Set warm_start=False to start from the model's `init`.")
        return params

    def __getattr__(self, name):
        # Only reached when normal lookup fails.
        if name in _MLP_ONLY_ATTRIBUTES and "params_" in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__!r} fitted on the model {type(self.model_).__name__} "
                f"has no {name!r}: that attribute is the built-in MLP's. The trained "
                f"parameters are `params_` (the model's pytree); `switch_params_` at the "
                f"switch, `init_params_` at the start.")
        # Anything else fails as ordinary lookup does (a descriptor's own message kept).
        return object.__getattribute__(self, name)

    def _check_ntk_epochs(self):
        n = self.ntk_epochs
        if n != "auto" and not math.isinf(n) and n != int(n):
            raise ValueError(f"`ntk_epochs` must be a whole number of epochs or numpy.inf; "
                             f"got {n!r}.")
        try:
            NTK_PHASES[self.ntk_phase].check_params(self.ntk_solver, n)
        except ValueError as error:
            raise ValueError(f"{error} (got ntk_phase={self.ntk_phase!r}, ntk_solver="
                             f"{self.ntk_solver!r}, ntk_epochs={n!r})") from None

    # -------------------------------------------------------------- predict

    def __sklearn_is_fitted__(self):
        return "coefs_" in self.__dict__ or "params_" in self.__dict__

    def _prediction_input(self, X):
        """``X`` checked against the fit, as float32 (clipped to its range)."""
        check_is_fitted(self)
        check_not_forked()
        refuse_sparse(X, "X", type(self).__name__)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if X.dtype != COMPUTE_DTYPE:
            # Beyond the float32 range: clip rather than overflow to inf in the cast.
            X = np.clip(X, -FLOAT32_MAX, FLOAT32_MAX)
        return np.asarray(X, dtype=COMPUTE_DTYPE)

    def _fitted_phase(self):
        """The fitted NTK phase's implementation and what it predicts from besides the
        parameters: its fitted attributes, the parameterisation's scales and the fitted
        kernel solver."""
        phase = NTK_PHASES[self.ntk_phase_].variant(self.ntk_solver_, self.kernel_solver_)
        fitted = {name: getattr(self, name) for name in phase.fitted_attributes}
        if "params_" in self.__dict__:
            fitted["layer_scales"] = self.model_  # the network of skntk._network
        else:
            layer_sizes = (self.coefs_[0].shape[0], *(W.shape[1] for W in self.coefs_))
            fitted["layer_scales"] = layer_scales(layer_sizes, self.parameterization_,
                                                  self.activation_)
        fitted["kernel_solver_"] = self.kernel_solver_
        return phase, fitted

    def _fitted_params(self):
        """The final parameters and those at the switch, as jax arrays."""
        if "params_" in self.__dict__:
            return params_to_jax(self.params_), params_to_jax(self.switch_params_)
        return (params_to_jax(list(zip(self.coefs_, self.intercepts_))),
                params_to_jax(list(zip(self.switch_coefs_, self.switch_intercepts_))))

    @uses_program_cache
    def _outputs(self, X):
        """Raw float64 outputs (logits of a classifier) of the fitted model, shape
        (n_samples, n_outputs); may hold ``inf`` or NaN. The fitted phase, solver and
        budget are used, never the current parameters."""
        X = self._prediction_input(X)
        params, params_star = self._fitted_params()
        phase, fitted = self._fitted_phase()
        # Fixed-size row blocks: one compiled shape, and each sample's outputs do not
        # depend on how many others are predicted with it.
        n_samples = X.shape[0]
        padded = pad_rows(X, -(-n_samples // PREDICT_BLOCK) * PREDICT_BLOCK)
        with np.errstate(over="ignore", invalid="ignore"):
            blocks = [np.asarray(phase.predict_outputs(
                params_star, params, fitted, jax.device_put(padded[i:i + PREDICT_BLOCK])),
                dtype=np.float64) for i in range(0, padded.shape[0], PREDICT_BLOCK)]
        return np.concatenate(blocks)[:n_samples]

    def _variance_is_defined(self):
        """Check of ``predict_variance`` (``available_if``): True, or an
        ``AttributeError`` that says what to refit with. A fitted estimator is judged by
        its fitted phase and flow time, an unfitted one by its parameters."""
        if self.__sklearn_is_fitted__():
            phase, fitted = self._fitted_phase()
            if phase.has_variance and phase.variance_defined(fitted):
                return True
            if phase.has_variance:
                got = (f"this estimator was fitted with ntk_phase={self.ntk_phase_!r} at the "
                       f"finite flow time t = ntk_learning_rate_ * ntk_epochs = "
                       f"{fitted['kernel_flow_time_']:.4g}")
            else:
                got = f"this estimator was fitted with ntk_phase={self.ntk_phase_!r}"
        else:
            phase, epochs = self.ntk_phase, self.ntk_epochs
            infinite = epochs == "auto" or (isinstance(epochs, Real) and math.isinf(epochs))
            if NTK_PHASES.get(phase, NTK_PHASES[None]).has_variance and infinite:
                return True
            got = f"got ntk_phase={phase!r} and ntk_epochs={epochs!r}"
        raise AttributeError(
            f"predict_variance is defined for ntk_phase='kernel' with ntk_epochs='auto' or "
            f"numpy.inf (kernel regression, the posterior mean of the NTK Gaussian "
            f"process); {got}. Fit with ntk_phase='kernel' and ntk_epochs='auto' to use it.")

    @uses_program_cache
    def _predict_variance(self, X):
        X = self._prediction_input(X)
        _, params_star = self._fitted_params()
        phase, fitted = self._fitted_phase()
        return phase.predict_variance(params_star, fitted, X, PREDICT_BLOCK)

    # ---------------------------------------------------------- copies, pickles

    def __sklearn_clone__(self):
        # A jax.Device cannot be deep-copied, which scikit-learn's clone does to every
        # parameter that is not an estimator. The clone gets a new list of the same
        # devices; every other parameter is cloned as scikit-learn does.
        if not isinstance(self.devices, list):
            return super().__sklearn_clone__()
        stand_in = object.__new__(type(self))
        stand_in.__dict__.update(self.__dict__, devices=None)
        cloned = stand_in.__sklearn_clone__()
        cloned.devices = list(self.devices)
        return cloned

    def __getstate__(self):
        # Used by pickle and copy.deepcopy: jax devices as (platform, id) pairs.
        state = super().__getstate__()
        if "devices" in state:
            state = dict(state, devices=devices_to_state(state["devices"]))
        return state

    def __setstate__(self, state):
        if "devices" in state:
            state = dict(state, devices=devices_from_state(state["devices"]))
        super().__setstate__(state)
