"""HybridNTKClassifier: SGD while the NTK moves, then training in the NTK regime."""

import math
import time
import warnings
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._mlp import (accuracy, init_mlp_params, loss_and_accuracy, mean_cross_entropy,
                   params_to_jax, params_to_numpy)
from ._phases import NTK_PHASES, PhaseSettings
from ._sgd import sgd_epoch
from ._switch import KERNEL_CRITERIA, SWITCH_CRITERIA, SwitchConfig
from .ntk import DEFAULT_MAX_KERNEL_BYTES, check_kernel_budget

COMPUTE_DTYPE = np.float32
PREDICT_BLOCK = 256

_FITTED_ATTRIBUTES = (
    "classes_", "coefs_", "intercepts_", "switch_coefs_", "switch_intercepts_", "history_",
    "loss_curve_", "switch_epoch_", "switch_threshold_", "switch_reached_", "n_iter_", "sgd_time_", "ntk_time_",
    "_ntk_extra",
)


class HybridNTKClassifier(ClassifierMixin, BaseEstimator):
    """MLP classifier trained by SGD until its NTK settles, then in the NTK regime.

    Training has two phases (see the user guide and ``DESIGN.md``):

    1. **SGD phase.** Mini-batch SGD on the mean cross-entropy, one shuffled pass per
       epoch. After each epoch the ``switch`` criterion is evaluated.
    2. **NTK phase.** From the parameters ``theta*`` at the switch, training continues
       around ``theta*``: with the Jacobian frozen at ``theta*``
       (``"frozen_jacobian"``), on the linearised network (``"linearized"``), or in
       closed form as kernel gradient flow (``"kernel"``).

    Computation runs in float32 on JAX's default device, whatever the input dtype;
    JAX's global configuration is never changed.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Width of each hidden ReLU layer; ``()`` gives a linear softmax model.
    learning_rate : float, default=0.05
        Step size of the SGD phase.
    batch_size : int, default=64
        Mini-batch size of the SGD phase, clipped to the number of training samples.
        Every sample is used once per epoch; the last batch may be smaller.
    max_sgd_epochs : int, default=50
        Budget of SGD epochs. 0 starts the NTK phase at initialisation.
    switch : {"ntk_norm", "kernel_distance", "param_norm", "fixed_epoch"} or None, \
            default="ntk_norm"
        Criterion that ends the SGD phase, evaluated after every epoch ``e``:

        - ``"fixed_epoch"``: ``e >= switch_epoch``;
        - ``"param_norm"``: ``||theta_e - theta_{e-k}||_2 < switch_threshold``;
        - ``"ntk_norm"``: ``|D_e - D_{e-k}| < switch_threshold`` with
          ``D_e = ||K_e - K_0||_F`` the Frobenius distance of the empirical NTK on a
          fixed monitor subset from its value at initialisation;
        - ``"kernel_distance"``: ``1 - <K_e, K_{e-k}>_F / (||K_e||_F ||K_{e-k}||_F)
          < switch_threshold`` (Fort et al. 2020);
        - ``None``: no switch; SGD runs all ``max_sgd_epochs``.

        ``k`` is ``switch_window``; the statistics need ``e >= k``.
    switch_window : int, default=3
        ``k``, in epochs.
    switch_threshold : float or "auto", default="auto"
        Threshold of the switch statistic. 0 never triggers: a scouting run that only
        records the statistic in ``history_["switch_statistic"]``. ``"auto"`` scales
        with the initial state so that one default serves data of any scale:
        ``0.25 * ||K_0||_F`` for ``"ntk_norm"``, ``0.01 * ||theta_0||_2`` for
        ``"param_norm"`` and ``1e-3`` for ``"kernel_distance"``; the value used is
        ``switch_threshold_``.
    switch_epoch : int, default=10
        Epoch of the ``"fixed_epoch"`` criterion.
    ntk_monitor_size : int, default=256
        Training samples (drawn once, from ``random_state``) on which the kernel
        criteria compute the NTK; clipped to the training set.
    ntk_phase : {"frozen_jacobian", "linearized", "kernel"} or None, \
            default="frozen_jacobian"
        How training continues after the switch; ``None`` stops after SGD.
    ntk_epochs : int or numpy.inf, default=20
        Full-batch epochs of the NTK phase; for ``"kernel"``, the flow time is
        ``t = ntk_learning_rate * ntk_epochs`` and ``numpy.inf`` gives kernel regression.
    ntk_learning_rate : float, default=0.5
        Step size ``eta`` of the NTK phase.
    kernel_ridge : float, default=0.0
        Ridge ``rho`` added to the kernel of the ``"kernel"`` phase.
    max_kernel_bytes : int, default=2 GiB
        Memory budget of one kernel matrix (the monitor kernel and the training
        kernel of the ``"kernel"`` phase); a larger kernel is refused with a
        ``ValueError`` before it is allocated.
    validation_fraction : float or None, default=0.1
        Share of the training data held out (stratified) to record validation loss
        and accuracy; ``None`` or 0 trains on everything. Ignored when ``X_val`` is
        passed to :meth:`fit`. When a stratified split is impossible (a class with a
        single sample, or fewer held-out samples than classes) all data is used for
        training and a ``UserWarning`` says so.
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights, the validation split, the monitor subset and the
        SGD shuffling. Pass an int for reproducible results.
    verbose : int, default=0
        1 prints one line per epoch and a line at the switch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the dtype of ``y``.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string column names.
    coefs_, intercepts_ : list of ndarray
        Final network: ``W`` of shape (fan_in, fan_out) and ``b`` of shape (fan_out,)
        per layer. For ``"kernel"`` this is ``theta*``.
    switch_coefs_, switch_intercepts_ : list of ndarray
        ``theta*``, the parameters at the switch.
    history_ : dict of ndarray
        One entry per epoch of either phase: ``epoch`` (1-based, continuing through
        the NTK phase), ``phase`` (``"sgd"`` or ``"ntk"``), ``train_loss``,
        ``train_accuracy``, ``val_loss``, ``val_accuracy`` (NaN without validation
        data), ``switch_statistic`` (NaN where undefined) and ``elapsed_s`` (seconds
        since the start of ``fit``). Losses are mean cross-entropy.
    loss_curve_ : list of float
        ``history_["train_loss"]``.
    switch_epoch_ : int
        Last SGD epoch (the expansion point of the NTK phase).
    switch_threshold_ : float
        Threshold used (``switch_threshold`` with ``"auto"`` resolved; NaN for
        ``"fixed_epoch"`` and ``None``).
    switch_reached_ : bool
        Whether the criterion held before the budget ran out.
    n_iter_ : int
        Epochs run in both phases.
    sgd_time_, ntk_time_ : float
        Seconds spent in each phase.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : the same network trained by SGD only.

    References
    ----------
    Jacot, Gabriel and Hongler, "Neural tangent kernel", NeurIPS 2018.
    Lee et al., "Wide neural networks of any depth evolve as linear models under
    gradient descent", NeurIPS 2019.
    Fort et al., "Deep learning versus kernel learning", NeurIPS 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skntk import HybridNTKClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = HybridNTKClassifier(hidden_layer_sizes=(32,), max_sgd_epochs=20,
    ...                           random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    """

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like"],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_sgd_epochs": [Interval(Integral, 0, None, closed="left")],
        "switch": [StrOptions(set(c for c in SWITCH_CRITERIA if c is not None)), None],
        "switch_window": [Interval(Integral, 1, None, closed="left")],
        "switch_threshold": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "switch_epoch": [Interval(Integral, 1, None, closed="left")],
        "ntk_monitor_size": [Interval(Integral, 2, None, closed="left")],
        "ntk_phase": [StrOptions(set(p for p in NTK_PHASES if p is not None)), None],
        "ntk_epochs": [Interval(Real, 0, None, closed="both")],
        "ntk_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "kernel_ridge": [Interval(Real, 0, None, closed="left")],
        "max_kernel_bytes": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, hidden_layer_sizes=(128, 128), learning_rate=0.05, batch_size=64,
                 max_sgd_epochs=50, switch="ntk_norm", switch_window=3, switch_threshold="auto",
                 switch_epoch=10, ntk_monitor_size=256, ntk_phase="frozen_jacobian",
                 ntk_epochs=20, ntk_learning_rate=0.5, kernel_ridge=0.0,
                 max_kernel_bytes=DEFAULT_MAX_KERNEL_BYTES, validation_fraction=0.1,
                 random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_sgd_epochs = max_sgd_epochs
        self.switch = switch
        self.switch_window = switch_window
        self.switch_threshold = switch_threshold
        self.switch_epoch = switch_epoch
        self.ntk_monitor_size = ntk_monitor_size
        self.ntk_phase = ntk_phase
        self.ntk_epochs = ntk_epochs
        self.ntk_learning_rate = ntk_learning_rate
        self.kernel_ridge = kernel_ridge
        self.max_kernel_bytes = max_kernel_bytes
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_val=None, y_val=None):
        """Train the network: SGD phase, switch, NTK phase.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; any real dtype (computation is float32). Not modified.
        y : array-like of shape (n_samples,)
            Class labels of any type (strings, integers, booleans).
        X_val : array-like of shape (n_val, n_features), default=None
            Validation inputs; when given, ``validation_fraction`` is ignored.
        y_val : array-like of shape (n_val,), default=None
            Validation labels, all among the labels of ``y``.

        Returns
        -------
        self : HybridNTKClassifier
            The fitted estimator.

        Raises
        ------
        ValueError
            For invalid parameters or data (NaN/inf, fewer than two classes, unknown
            validation labels), a kernel over ``max_kernel_bytes``, or a non-finite
            loss during training (the estimator is then left unfitted).
        """
        for name in _FITTED_ATTRIBUTES:
            self.__dict__.pop(name, None)
        layers = self._check_hidden_layer_sizes()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"HybridNTKClassifier needs samples of at least 2 classes; got 1 class "
                f"({classes[0]!r}). Pass data with two or more distinct labels in `y`.")
        self._check_ntk_epochs()
        rng = check_random_state(self.random_state)
        X, Y, X_val, Y_val = self._split(X, y_index, len(classes), X_val, y_val, classes, rng)

        fitted = _fit_hybrid(self, X, Y, X_val, Y_val, layers, rng)
        self.classes_ = classes
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    def _check_hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
        if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
            raise ValueError(
                f"`hidden_layer_sizes` must be a tuple of positive integers; got "
                f"{self.hidden_layer_sizes!r}. For example hidden_layer_sizes=(128, 128).")
        return tuple(int(s) for s in sizes)

    def _check_ntk_epochs(self):
        n = self.ntk_epochs
        if math.isinf(n) and self.ntk_phase != "kernel":
            raise ValueError(
                f"`ntk_epochs=inf` is only defined for ntk_phase='kernel' (kernel "
                f"regression); got ntk_phase={self.ntk_phase!r}. Pass a whole number of epochs.")
        if not math.isinf(n) and n != int(n):
            raise ValueError(f"`ntk_epochs` must be a whole number of epochs or numpy.inf; got {n!r}.")

    def _split(self, X, y_index, n_classes, X_val, y_val, classes, rng):
        """Float32 training and validation arrays with one-hot targets (copies)."""
        split_seed = rng.randint(np.iinfo(np.int32).max)
        if (X_val is None) != (y_val is None):
            raise ValueError("Pass both `X_val` and `y_val`, or neither.")
        if X_val is not None:
            X_val = validate_data(self, X_val, reset=False, dtype=[np.float64, np.float32])
            y_val = np.asarray(y_val)
            if y_val.shape != (X_val.shape[0],):
                raise ValueError(f"`y_val` must have shape ({X_val.shape[0]},) to match "
                                 f"`X_val`; got {y_val.shape}.")
            unknown = np.setdiff1d(y_val, classes)
            if unknown.size:
                raise ValueError(f"`y_val` holds labels not seen in `y`: {unknown[:5].tolist()}.")
            val_index = np.searchsorted(classes, y_val)
        elif self.validation_fraction:
            n_val = int(np.ceil(self.validation_fraction * X.shape[0]))
            counts = np.bincount(y_index, minlength=n_classes)
            if counts.min() >= 2 and n_classes <= n_val <= X.shape[0] - n_classes:
                X, X_val, y_index, val_index = train_test_split(
                    X, y_index, test_size=n_val, stratify=y_index, random_state=split_seed)
            else:
                warnings.warn(
                    f"validation_fraction={self.validation_fraction} cannot give a stratified "
                    f"split of {X.shape[0]} samples in {n_classes} classes (smallest class: "
                    f"{counts.min()} samples); training on all samples without validation. "
                    f"Pass validation_fraction=None to silence this warning.", UserWarning)
        eye = np.eye(n_classes, dtype=COMPUTE_DTYPE)
        X = np.array(X, dtype=COMPUTE_DTYPE)
        if X_val is None:
            return X, eye[y_index], None, None
        return X, eye[y_index], np.array(X_val, dtype=COMPUTE_DTYPE), eye[val_index]

    # -------------------------------------------------------------- predict

    def __sklearn_is_fitted__(self):
        return hasattr(self, "coefs_")

    def _logits(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        X = np.asarray(X, dtype=COMPUTE_DTYPE)
        params = params_to_jax(list(zip(self.coefs_, self.intercepts_)))
        params_star = params_to_jax(list(zip(self.switch_coefs_, self.switch_intercepts_)))
        phase = NTK_PHASES[self.ntk_phase]
        # Fixed-size row blocks: one compiled shape, and each sample's logits do not
        # depend on how many others are predicted with it.
        n_samples = X.shape[0]
        padded = np.zeros((-(-n_samples // PREDICT_BLOCK) * PREDICT_BLOCK, X.shape[1]), X.dtype)
        padded[:n_samples] = X
        blocks = [np.asarray(phase.predict_logits(params_star, params, self._ntk_extra,
                                                  jnp.asarray(padded[i:i + PREDICT_BLOCK])),
                             dtype=np.float64)
                  for i in range(0, padded.shape[0], PREDICT_BLOCK)]
        return np.concatenate(blocks)[:n_samples]

    def predict_proba(self, X):
        """Class probabilities: the softmax of the model's logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Columns in the order of ``classes_``; rows sum to 1.
        """
        return softmax(self._logits(X), axis=1)

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels from ``classes_``, in their dtype.
        """
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


# ---------------------------------------------------------------------------- training

class _History:
    """Per-epoch records and the optional one-line-per-epoch report."""

    def __init__(self, verbose, start):
        self.rows = []
        self.verbose = verbose
        self.start = start

    def record(self, phase, params_or_logits, X, Y, X_val, Y_val, statistic, logits_fn):
        train_loss, train_acc = _metrics(logits_fn, params_or_logits, X, Y)
        val_loss, val_acc = ((math.nan, math.nan) if X_val is None
                             else _metrics(logits_fn, params_or_logits, X_val, Y_val))
        if not math.isfinite(train_loss):
            raise ValueError(
                f"The training loss became non-finite in the {phase.upper()} phase at epoch "
                f"{len(self.rows) + 1}. Lower the learning rate (`learning_rate` for the SGD "
                f"phase, `ntk_learning_rate` for the NTK phase).")
        row = dict(epoch=len(self.rows) + 1, phase=phase, train_loss=train_loss,
                   train_accuracy=train_acc, val_loss=val_loss, val_accuracy=val_acc,
                   switch_statistic=statistic, elapsed_s=time.perf_counter() - self.start)
        self.rows.append(row)
        if self.verbose:
            print(f"[{phase}] epoch {row['epoch']:4d}  train loss {train_loss:.4f} "
                  f"acc {train_acc:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  "
                  f"switch statistic {statistic:.4g}  {row['elapsed_s']:.2f} s")

    def as_arrays(self):
        keys = ("epoch", "phase", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                "switch_statistic", "elapsed_s")
        history = {k: np.array([row[k] for row in self.rows]) for k in keys}
        if not self.rows:
            history = {k: np.array([], dtype=float) for k in keys}
        history["epoch"] = history["epoch"].astype(int)
        history["phase"] = history["phase"].astype("<U3")
        return history


def _metrics(logits_fn, state, X, Y):
    loss, acc = logits_fn(state, X, Y)
    return float(loss), float(acc)


def _fit_hybrid(est, X, Y, X_val, Y_val, layers, rng):
    """Both phases on prepared float32 arrays; returns the fitted attributes."""
    start = time.perf_counter()
    n_samples, n_classes = Y.shape
    params = params_to_jax(init_mlp_params((X.shape[1], *layers, n_classes), rng, COMPUTE_DTYPE))
    monitor = None
    if est.switch in KERNEL_CRITERIA:
        m = min(est.ntk_monitor_size, n_samples)
        check_kernel_budget(m, m, COMPUTE_DTYPE, est.max_kernel_bytes, what="monitor kernel",
                            fix_hint="lower `ntk_monitor_size`")
        monitor = jnp.asarray(X[np.sort(rng.choice(n_samples, m, replace=False))])
    key = jax.random.key(rng.randint(np.iinfo(np.int32).max))
    X_j, Y_j = jnp.asarray(X), jnp.asarray(Y)
    Xv_j = None if X_val is None else jnp.asarray(X_val)
    Yv_j = None if Y_val is None else jnp.asarray(Y_val)

    history = _History(est.verbose, start)
    criterion = SWITCH_CRITERIA[est.switch]
    config = SwitchConfig(est.switch_window, math.nan, est.switch_epoch, monitor)
    state = criterion.init(params, config)
    threshold = (criterion.auto_threshold(state) if est.switch_threshold == "auto"
                 else float(est.switch_threshold))
    config = config._replace(threshold=threshold)
    batch_size = min(est.batch_size, n_samples)
    switched = False
    for epoch in range(1, est.max_sgd_epochs + 1):
        key, epoch_key = jax.random.split(key)
        params = sgd_epoch(params, X_j, Y_j, epoch_key, est.learning_rate, batch_size)
        state, statistic, switched = criterion.update(state, epoch, params, config)
        history.record("sgd", params, X_j, Y_j, Xv_j, Yv_j, statistic, loss_and_accuracy)
        if switched:
            if est.verbose:
                print(f"Switch criterion {est.switch!r} met at epoch {epoch}.")
            break
    n_sgd = len(history.rows)
    if est.switch is not None and not switched:
        warnings.warn(
            f"The switch criterion {est.switch!r} did not hold within max_sgd_epochs="
            f"{est.max_sgd_epochs}; the NTK phase starts from the last SGD parameters. "
            f"Raise `max_sgd_epochs` or `switch_threshold`.", ConvergenceWarning)
    sgd_time = time.perf_counter() - start

    ntk_start = time.perf_counter()
    phase = NTK_PHASES[est.ntk_phase]
    settings = PhaseSettings(float(est.ntk_learning_rate), est.ntk_epochs,
                             float(est.kernel_ridge), est.max_kernel_bytes)
    phase_state = phase.start(params, X_j, Y_j, settings)

    def phase_metrics(st, X_, Y_):
        return _logit_metrics(phase.logits(st, X_), Y_)

    if est.ntk_phase is not None:
        for epoch in phase.epochs(settings):
            phase_state = phase.step(phase_state, epoch, settings)
            history.record("ntk", phase_state, X_j, Y_j, Xv_j, Yv_j, math.nan, phase_metrics)
    ntk_time = time.perf_counter() - ntk_start

    params_star = params_to_numpy(params)
    final = phase.network(phase_state)
    arrays = history.as_arrays()
    return dict(
        coefs_=[W for W, _ in final], intercepts_=[b for _, b in final],
        switch_coefs_=[W for W, _ in params_star], switch_intercepts_=[b for _, b in params_star],
        history_=arrays, loss_curve_=arrays["train_loss"].tolist(),
        switch_epoch_=n_sgd, switch_threshold_=threshold, switch_reached_=bool(switched), n_iter_=len(history.rows),
        sgd_time_=sgd_time, ntk_time_=ntk_time, _ntk_extra=phase.extra_state(phase_state),
    )


@jax.jit
def _logit_metrics(logits, Y):
    return mean_cross_entropy(logits, Y), accuracy(logits, Y)
