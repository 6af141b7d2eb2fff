"""HybridNTKRegressor: the hybrid SGD / NTK training for the squared error."""

import warnings

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import validate_data

from ._base import BaseHybridNTK, available_with_reason
from ._losses import SQUARED_ERROR
from ._training import COMPUTE_DTYPE
from ._weights import check_sample_weight
from ._validation import check_float32_range
from .ntk import DEFAULT_MAX_KERNEL_BYTES

MIN_VALIDATION_SAMPLES = 2
"""Fewest held-out samples for which the validation R^2 is defined."""


class HybridNTKRegressor(RegressorMixin, BaseHybridNTK):
    """MLP regressor trained by SGD until its NTK settles, then in the NTK regime.

    The two-phase method of :class:`HybridNTKClassifier` for the squared error: one or
    several real-valued outputs, identity output, the loss ``(1/2) sum_c (f_c(x) -
    y_c)^2`` averaged over the samples (for one output the loss of scikit-learn's
    ``MLPRegressor``), and the coefficient of determination R^2 as score, in
    ``history_`` and in early stopping.

    1. **SGD phase.** Mini-batch SGD on the mean squared error; after each epoch the
       ``switch`` criterion is evaluated.
    2. **NTK phase.** From the parameters ``theta*`` at the switch: the linearised
       network (``"linearized"``, L-BFGS by default), the network with its Jacobian
       frozen at ``theta*`` (``"frozen_jacobian"``), or kernel regression / kernel
       gradient flow with the NTK at ``theta*`` (``"kernel"``). For the squared error
       the linearised network under gradient flow *is* the kernel flow (Lee et al.
       2019): ``"kernel"`` is its closed form, with the traced kernel
       ``K_bar = K / C`` over the ``C`` outputs (the user guide's "NTK phases").

    Computation runs in float32 on JAX's default device. Targets are standardised per
    output for training (``normalize_y=True``) and predictions mapped back.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
        Width of each hidden layer (an int: one layer); ``()`` gives a linear model.
    activation : {"relu", "tanh", "erf", "gelu", "identity"}, default="relu"
        Activation of the hidden layers, as in :class:`HybridNTKClassifier`.
    learning_rate : float or "auto", default="auto"
        Step size of the SGD phase. ``"auto"``: ``min(0.05, m / lambda_max(Theta_m))``
        with ``Theta_m`` the per-output NTK of the initial network on the ``m``
        monitor samples: the step ``1 / L`` for the smoothness ``L`` of the mean
        squared error at initialisation (Hessian ``J^T J / N``), capped at 0.05
        (the SGD step of the benchmarks). The squared error's gradient grows with the outputs, so
        a fixed step that suits standardised inputs diverges on inputs of scale 100,
        where this one is about 3e-5; for standardised inputs it is 0.04 to 0.05 with
        the default layers. The value used is ``learning_rate_``.
    batch_size : int, default=64
        Mini-batch size of the SGD phase, clipped to the number of training samples.
    max_sgd_epochs : int, default=50
        Budget of SGD epochs; 0 starts the NTK phase at initialisation.
    switch : {"kernel_velocity", "ntk_norm", "kernel_distance", "param_norm", \
            "fixed_epoch"} or None, default="kernel_velocity"
        Criterion that ends the SGD phase, as in :class:`HybridNTKClassifier`.
    switch_window : int, default=3
        ``k``, epochs between the two compared states.
    switch_threshold : float or "auto", default="auto"
        Threshold of the switch statistic (0: a scouting run that never switches);
        ``"auto"`` as in :class:`HybridNTKClassifier`.
    switch_epoch : int, default=10
        Epoch of the ``"fixed_epoch"`` criterion.
    ntk_monitor_size : int, default=128
        Training samples on which the kernel criteria compute the NTK and
        ``ntk_learning_rate="auto"`` its top eigenvalue.
    ntk_phase : {"linearized", "frozen_jacobian", "kernel"} or None, \
            default="linearized"
        How training continues after the switch; ``None`` stops after SGD.
    ntk_epochs : int, numpy.inf or "auto", default="auto"
        Full-batch epochs of the NTK phase. ``"auto"`` stops when an epoch lowers the
        training loss by less than ``ntk_tol`` times its value at the switch, once
        that loss has halved (before that, two such epochs in a row), or, with
        validation data, when the validation R^2 has not improved for
        ``ntk_patience`` epochs (the latest state whose R^2 is within one standard
        error, ``(1 - R^2) sqrt(2 / n_val)``, of the best and not below the switch
        state's is kept), after at most 100 epochs.
        For ``"kernel"`` the flow time is ``t = ntk_learning_rate * ntk_epochs``;
        ``numpy.inf`` and ``"auto"`` give kernel regression.
    ntk_learning_rate : float or "auto", default="auto"
        Step size of the gradient-descent NTK phases. ``"auto"``:
        ``eta = m / lambda_max(Theta_m)``, the step ``1 / L`` for the smoothness ``L``
        of the linearised squared error (Hessian ``J^T J / N``), with ``Theta_m`` the
        per-output NTK on the ``m`` monitor samples. NaN where no step is taken.
    ntk_solver : {"auto", "lbfgs", "gd"}, default="auto"
        Solver of the NTK phase: L-BFGS with an exact line search (``"linearized"``
        only; for the squared error each line search is exact in one Newton step) or
        gradient descent.
    ntk_tol : float, default=3e-2
        Convergence tolerance of ``ntk_epochs="auto"``, relative to the training loss
        at the switch.
    ntk_patience : int, default=5
        Epochs without a better validation R^2 before ``ntk_epochs="auto"`` stops.
    ntk_ridge : float, default=1e-3
        ``lambda`` of the penalty ``(lambda / 2) ||theta - theta*||_2^2`` of the
        ``"linearized"`` phase.
    kernel_ridge : float, default=1e-3
        Ridge ``rho`` added to the kernel of the ``"kernel"`` phase (the ``alpha`` of
        :class:`sklearn.kernel_ridge.KernelRidge`, for the kernel ``K_bar``), in the
        units of the standardised targets. Without it the float32 kernel's smallest
        eigenvalues, which are rounding, are inverted: on 200 samples of
        ``sin(x0) + x1 / 2`` (32 hidden units, 10 SGD epochs) the test R^2 was 0.78
        at 0 and 0.996 at 1e-3.
    kernel_offset : {"zero", "network"}, default="network"
        Function the ``"kernel"`` phase's regression starts from: the network at
        ``theta*`` (``f_0``, so that the phase continues the network, as the
        linearised phases do; the network's outputs are on the scale of the targets
        of the squared error) or zero (kernel regression of the targets alone).
    kernel_solver : {"auto", "dense", "matrix_free"}, default="auto"
        How the ``"kernel"`` phase is solved: dense eigendecomposition, or conjugate
        gradients / Lanczos without forming the N x N kernel; ``"auto"``: dense unless
        its kernels exceed ``max_kernel_bytes``.
    kernel_tol : float, default=1e-5
        Relative tolerance of the matrix-free solver.
    kernel_max_iter : int, default=500
        Most iterations of the matrix-free solver.
    max_kernel_bytes : int, default=2 GiB
        Memory budget, in bytes, of the kernel matrices held at once, checked at the
        start of :meth:`fit` (see :class:`HybridNTKClassifier`).
    validation_fraction : float or None, default=0.1
        Share of the training data held out at random to record validation loss and
        R^2 and to stop ``ntk_epochs="auto"`` early; ``None`` or 0 trains on
        everything. When fewer than 2 samples would be held out, or none would remain,
        all data is used for training with a ``UserWarning``. Ignored when ``X_val`` is
        passed to :meth:`fit`.
    devices : int, list of jax.Device or None, default=None
        Devices of data-parallel training, as in :class:`HybridNTKClassifier`.
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights, the validation split, the monitor subset and the
        SGD shuffling.
    verbose : int, default=0
        1 prints one line per epoch and a line at the switch.
    kernel_diagnostics : bool, default=False
        Record the monitor kernel's diagnostics per SGD epoch in ``history_`` (the
        kernel alignment is with the monitor samples' targets).
    callbacks : callable, list of callables or None, default=None
        Called after every epoch with an ``EpochInfo``, as in
        :class:`HybridNTKClassifier`.
    warm_start : bool, default=False
        Start the next :meth:`fit` from the fitted network (same features and
        number of outputs). A refit that cannot continue it raises a ``ValueError``
        before any training and leaves the fitted model as it was.
    parameterization : {"standard", "ntk"}, default="standard"
        Coordinates in which the network is initialised and trained, as in
        :class:`HybridNTKClassifier`.
    normalize_y : bool, default=True
        Train on the targets standardised per output with the mean and standard
        deviation of the training part (``y_mean_``, ``y_scale_``; a constant output
        gets scale 1), and map the model's outputs back: ``predict(x) = y_mean_ +
        y_scale_ * f(x)``, as ``GaussianProcessRegressor(normalize_y=True)``. The
        network's initial outputs are of order 1 and the step sizes assume targets of
        that scale: without it, targets of scale 100 make SGD at the default
        ``learning_rate`` diverge. ``False`` trains on ``y`` as given.
    solver : {"sgd", "adam"}, default="sgd"
        Optimiser of the SGD phase, as in :class:`HybridNTKClassifier`.
    momentum : float in [0, 1), default=0.0
        Momentum of ``solver="sgd"`` (0: plain SGD).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for ``solver="sgd"`` when ``momentum > 0``.
    alpha : float, default=0.0
        L2 penalty of the SGD phase, as in :class:`HybridNTKClassifier`.
    model : model object or None, default=None
        The network (:mod:`skntk.models`): ``None`` builds the built-in MLP from
        ``hidden_layer_sizes``, ``activation`` and ``parameterization``; otherwise an
        object with ``init(key, n_features, n_outputs) -> params`` (a pytree of float32
        arrays) and ``apply(params, X) -> outputs`` of shape ``(n_samples, n_outputs)``
        (:class:`~skntk.models.FunctionModel`, :class:`~skntk.models.FlaxModel`,
        :class:`~skntk.models.EquinoxModel`, :class:`~skntk.models.MLP`). A model
        other than ``MLP`` runs every phase and kernel by automatic differentiation, in
        its own coordinates: ``parameterization`` must then be ``"standard"``
        (``ValueError`` otherwise), and ``hidden_layer_sizes`` and ``activation`` are
        ignored. See the user guide, "Your own model".

    Attributes
    ----------
    n_outputs_ : int
        Number of outputs ``C`` (columns of ``y``; 1 for a 1-D ``y``).
    y_mean_, y_scale_ : ndarray of shape (n_outputs_,), float64
        The standardisation of the targets (``normalize_y``; 0 and 1 without it): the
        model is trained on ``(y - y_mean_) / y_scale_``, and every quantity in the
        model's units below (losses, ``dual_coef_``) refers to those targets.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string column names.
    coefs_, intercepts_ : list of ndarray
        Final network (for ``"kernel"``: ``theta*``).
    switch_coefs_, switch_intercepts_ : list of ndarray
        ``theta*``, the parameters at the switch.
    init_coefs_, init_intercepts_ : list of ndarray
        ``theta_0``, the initial parameters.
    params_, switch_params_, init_params_ : pytree of ndarray
        Only with a user ``model`` (not :class:`~skntk.models.MLP`), in place of
        ``coefs_``, ``intercepts_`` and their ``switch_`` and ``init_`` forms (which
        then raise an ``AttributeError``): the model's parameters at the end, at the
        switch and at the start.
    model_ : model object
        Only with a user ``model``: a clone of it, which the predictions use.
    monitor_indices_ : ndarray of shape (m,), int
        Rows of ``X`` that form the monitor subset.
    history_ : dict of ndarray
        One entry per epoch of either phase, as the classifier's, with the R^2 in
        ``train_r2`` and ``val_r2`` (NaN without validation data) instead of the
        accuracy; losses are half the mean squared error (summed over outputs).
    loss_curve_ : list of float
        ``history_["train_loss"]``.
    switch_epoch_, switch_, switch_threshold_, switch_reached_ : int, str, float, bool
        Row of ``history_`` of the final model's switch point (the last SGD epoch
        before its NTK phase), criterion used, its last threshold, whether it held
        at that switch.
    switch_attempts_ : list of dict
        One record per switch, as the classifier's: a switch that the NTK phase did
        not confirm is undone and SGD resumes.
    switch_epochs_ : ndarray of shape (n_attempts,), int
        ``switch_epoch`` of each record of ``switch_attempts_``.
    ntk_phase_, ntk_solver_, kernel_solver_, parameterization_, activation_ : str or None
        The NTK phase, solvers, parameterisation and activation of the fit; prediction
        uses these, never the current parameters, so :meth:`set_params` changes
        predictions only through the next :meth:`fit`.
    kernel_solver_info_ : dict or None
        The matrix-free solver's record (``None`` otherwise).
    dual_coef_ : ndarray of shape (n_train, n_outputs), float64
        Only for ``ntk_phase="kernel"``: the model is
        ``f(x) = offset(x) + K_bar(x, X_fit_) @ dual_coef_``; at ``t = inf``,
        ``dual_coef_ = (K_bar + rho I)^+ (Y - offset(X_fit_))``.
    X_fit_ : ndarray of shape (n_train, n_features), float32
        Only for ``ntk_phase="kernel"``: the training inputs of that model.
    kernel_offset_, kernel_ridge_, kernel_flow_time_ : str, float, float
        Only for ``ntk_phase="kernel"``: the offset, ridge ``rho`` and flow time ``t``
        of that model.
    kernel_tol_, kernel_max_iter_, max_kernel_bytes_ : float, int, int
        Only for ``ntk_phase="kernel"``: the solver settings and memory budget of the
        fit, used by prediction and :meth:`predict_variance`.
    kernel_sample_weight_ : ndarray of shape (n_fit,) or None
        Only for ``ntk_phase="kernel"``: the weights of the rows of ``X_fit_`` in the
        weighted kernel regression; ``None`` for weights 1.
    learning_rate_ : float
        Step size of the SGD phase (``learning_rate`` with ``"auto"`` resolved).
    ntk_learning_rate_ : float
        Step size used by the NTK phase (NaN where none is taken).
    ntk_stop_reason_ : str or None
        Why the NTK phase stopped.
    ntk_best_epoch_ : int
        Epoch of the NTK phase whose state the final model is (0: the switch point).
    n_iter_ : int
        Epochs run in both phases.
    sgd_time_, ntk_time_ : float
        Seconds spent in each phase.

    See Also
    --------
    HybridNTKClassifier : The same method for classification.
    sklearn.neural_network.MLPRegressor : The same network trained by SGD or Adam only.
    sklearn.kernel_ridge.KernelRidge : Kernel ridge regression with a fixed kernel.

    Notes
    -----
    At ``max_sgd_epochs=0``, ``ntk_phase="kernel"``, ``ntk_epochs=numpy.inf``,
    ``kernel_ridge=0``, ``kernel_offset="network"`` and ``normalize_y=False`` the model
    is the empirical-NTK kernel regression at initialisation,
    ``f(x) = f_0(x) + K_bar(x, X) K_bar(X, X)^+ (y - f_0(X))`` (Lee et al. 2019,
    eq. (9)-(10) at ``t = inf``); with ``normalize_y=True`` the same regression of the
    standardised targets, mapped back. Inputs are never modified; faults are reported as
    by :class:`HybridNTKClassifier`.

    References
    ----------
    Jacot, Gabriel and Hongler, "Neural tangent kernel", NeurIPS 2018.
    Lee et al., "Wide neural networks of any depth evolve as linear models under
    gradient descent", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from skntk import HybridNTKRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-2, 2, size=(200, 2))
    >>> y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    >>> reg = HybridNTKRegressor(hidden_layer_sizes=(32,), switch="fixed_epoch",
    ...                          switch_epoch=10, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    >>> bool(reg.score(X, y) > 0.9)
    True
    """

    _loss = SQUARED_ERROR
    _target_attributes = ("n_outputs_", "y_mean_", "y_scale_")
    _parameter_constraints = {**BaseHybridNTK._parameter_constraints,
                              "normalize_y": ["boolean"]}

    def __init__(self, hidden_layer_sizes=(128, 128), activation="relu", learning_rate="auto",
                 batch_size=64,
                 max_sgd_epochs=50, switch="kernel_velocity", switch_window=3,
                 switch_threshold="auto", switch_epoch=10, ntk_monitor_size=128,
                 ntk_phase="linearized", ntk_epochs="auto", ntk_learning_rate="auto",
                 ntk_solver="auto", ntk_tol=3e-2, ntk_patience=5, ntk_ridge=1e-3,
                 kernel_ridge=1e-3,
                 kernel_solver="auto", kernel_offset="network", kernel_tol=1e-5,
                 kernel_max_iter=500, max_kernel_bytes=DEFAULT_MAX_KERNEL_BYTES,
                 validation_fraction=0.1, devices=None, random_state=None, verbose=0,
                 kernel_diagnostics=False, callbacks=None, warm_start=False,
                 parameterization="standard", normalize_y=True, solver="sgd", momentum=0.0,
                 nesterovs_momentum=True, alpha=0.0, model=None):
        self.normalize_y = normalize_y
        self.solver = solver
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.alpha = alpha
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.parameterization = parameterization
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
        self.ntk_solver = ntk_solver
        self.ntk_tol = ntk_tol
        self.ntk_patience = ntk_patience
        self.ntk_ridge = ntk_ridge
        self.kernel_ridge = kernel_ridge
        self.kernel_solver = kernel_solver
        self.kernel_offset = kernel_offset
        self.kernel_tol = kernel_tol
        self.kernel_max_iter = kernel_max_iter
        self.max_kernel_bytes = max_kernel_bytes
        self.validation_fraction = validation_fraction
        self.devices = devices
        self.random_state = random_state
        self.verbose = verbose
        self.kernel_diagnostics = kernel_diagnostics
        self.callbacks = callbacks
        self.warm_start = warm_start

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, X_val=None, y_val=None, *, sample_weight=None, coef_init=None,
            intercept_init=None):
        """Train the network: SGD phase, switch, NTK phase.

        Any fitted state of an earlier call is cleared first (``warm_start=True`` keeps
        its network as the starting point); if this call fails, the estimator is left
        unfitted.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs, dense; any real dtype (computation is float32). Not
            modified.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Real-valued targets, finite and within the float32 range. Not modified.
        X_val : array-like of shape (n_val, n_features), default=None
            Validation inputs; when given, ``validation_fraction`` is ignored.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Validation targets, with the outputs of ``y``.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows of ``X`` (``None``: 1 each): training
            minimises ``sum_i w_i ell_i / sum_i w_i`` in every phase (the kernel phase
            is weighted kernel ridge regression), and ``normalize_y`` uses the weighted
            mean and standard deviation; a zero weight removes its row, integer weights
            act as repeated rows (see :meth:`HybridNTKClassifier.fit`). Not modified.
        coef_init, intercept_init : list of array-like, default=None
            Initial network instead of the random draw, for layer sizes
            ``(n_features, *hidden_layer_sizes, n_outputs)`` (see
            :meth:`HybridNTKClassifier.fit`).

        Returns
        -------
        self : HybridNTKRegressor
            The fitted estimator.

        Raises
        ------
        ValueError
            For invalid parameters or data: NaN or infinity in ``X``, ``y``, ``X_val``
            or ``y_val``, values beyond the float32 range, non-numeric ``y``,
            ``y_val`` with other outputs than ``y``; a kernel over
            ``max_kernel_bytes`` (raised before training); a non-finite loss or
            parameters during training (the message names the phase and epoch); an
            initial or warm-started network of the wrong shapes.
        TypeError
            If ``X`` or ``X_val`` is a scipy sparse matrix.
        """
        return self._fit_clearing_state(X, y, X_val, y_val, coef_init, intercept_init,
                                        sample_weight)

    def _prepare_targets(self, X, y, X_val, y_val, rng, sample_weight=None):
        """Targets checked and as float32 columns (n, C), the weights, and the random
        split."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True,
                             y_numeric=True)
        check_float32_range(X, "X")
        Y = self._target_columns(y, "y")
        n_outputs = Y.shape[1]
        X, Y, rows, weights = self._canonical(X, Y, check_sample_weight(sample_weight, X))
        val_weights = None
        split_seed = rng.randint(np.iinfo(np.int32).max)
        n_samples = X.shape[0]
        train_rows = np.arange(n_samples)
        Y_val = None
        if X_val is not None:
            X_val = self._check_validation_inputs(X_val)
            Y_val = self._target_columns(np.asarray(y_val), "y_val", n_outputs)
            if Y_val.shape[0] != X_val.shape[0]:
                raise ValueError(f"`y_val` has {Y_val.shape[0]} rows but `X_val` has "
                                 f"{X_val.shape[0]}; pass one target per validation sample.")
        elif self.validation_fraction:
            n_val = int(np.ceil(self.validation_fraction * n_samples))
            if n_val < MIN_VALIDATION_SAMPLES or n_samples - n_val < 1:
                warnings.warn(
                    f"validation_fraction={self.validation_fraction} cannot hold out a "
                    f"validation set of at least {MIN_VALIDATION_SAMPLES} of the "
                    f"{n_samples} samples with at least one left for training. Training "
                    f"on all {n_samples} samples without validation (val_loss and val_r2 "
                    f"are NaN). Pass `X_val` and `y_val`, more data, or "
                    f"validation_fraction=None to silence this warning.", UserWarning)
            else:
                train_rows, held = train_test_split(np.arange(n_samples), test_size=n_val,
                                                    random_state=split_seed)
                X_val, Y_val = X[held], Y[held]
                X, Y = X[train_rows], Y[train_rows]
                if weights is not None:
                    weights, val_weights = weights[train_rows], weights[held]
        mean, scale = np.zeros(n_outputs), np.ones(n_outputs)
        if self.normalize_y:
            mean = np.average(Y, axis=0, weights=weights)
            scale = np.sqrt(np.average((Y - mean) ** 2, axis=0, weights=weights))
            scale[scale == 0] = 1.0  # a constant output: centred only

        def standardised(a):
            return None if a is None else np.array((a - mean) / scale, dtype=COMPUTE_DTYPE)

        return (np.array(X, dtype=COMPUTE_DTYPE), standardised(Y),
                None if X_val is None else np.array(X_val, dtype=COMPUTE_DTYPE),
                standardised(Y_val), rows[train_rows],
                {"n_outputs_": n_outputs, "y_mean_": mean, "y_scale_": scale}, weights,
                val_weights)

    def _check_warm_start_targets(self, fitted_targets, targets):
        # The standardisation follows the new data; the network needs its outputs.
        super()._check_warm_start_targets({"n_outputs_": fitted_targets["n_outputs_"]},
                                          targets)

    def _target_columns(self, y, name, n_outputs=None):
        """``y`` as a float64 (n, C) array (a copy), checked: finite (NaN and infinity
        are refused by ``validate_data`` for ``y``, here for ``y_val``), numeric, within
        the float32 range, with ``n_outputs`` columns when given."""
        try:
            Y = np.array(y, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"`{name}` must hold real numbers: {error}") from error
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2:
            raise ValueError(f"`{name}` must be 1-D or 2-D; got shape {Y.shape}.")
        if not np.isfinite(Y).all():
            raise ValueError(f"`{name}` holds NaN or infinite values; pass finite targets.")
        check_float32_range(Y, name)
        if n_outputs is not None and Y.shape[1] != n_outputs:
            raise ValueError(f"`{name}` has {Y.shape[1]} output(s) but `y` has {n_outputs}; "
                             f"pass validation targets with the columns of `y`.")
        return Y

    # -------------------------------------------------------------- predict

    def predict(self, X):
        """The fitted model's outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense inputs with the features seen in :meth:`fit`. Values beyond the
            float32 range are clipped to it. Not modified.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs_), float64
            One column per output; a 1-D array when there is one output (as
            ``MLPRegressor``). For the ``"linearized"`` phase the linearised network,
            for ``"kernel"`` the kernel regression (``offset(x) + K_bar(x, X_fit_)
            dual_coef_``). Computed in float32; a diverged model may give ``inf`` or
            NaN.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` holds NaN or infinity, or has other features than in :meth:`fit`.
        TypeError
            If ``X`` is a scipy sparse matrix.
        """
        outputs = self._outputs(X)  # checks that the estimator is fitted
        outputs = self.y_mean_ + self.y_scale_ * outputs
        return outputs[:, 0] if self.n_outputs_ == 1 else outputs

    @available_with_reason(BaseHybridNTK._variance_is_defined)
    def predict_variance(self, X):
        """Posterior variance of each output under the NTK Gaussian process.

        Only for ``ntk_phase="kernel"`` at infinite flow time. Kernel regression with
        ``K_bar = K / C`` and ridge ``rho`` is the posterior mean of a Gaussian process
        with prior covariance ``K_bar`` for each output (independent between outputs)
        and observation noise of variance ``rho`` (He, Lakshminarayanan and Teh 2020;
        Lee et al. 2019, sec. 2.3); this returns
        ``var(x) = K_bar(x, x) - K_bar(x, X) (K_bar(X, X) + rho I)^+ K_bar(X, x)``,
        the same for every standardised output; multiplied by ``y_scale_ ** 2`` for
        each output, in squared target units. See
        :meth:`HybridNTKClassifier.predict_variance` for its meaning, cost and limits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense inputs with the features seen in :meth:`fit`. Not modified.

        Returns
        -------
        variance : ndarray of shape (n_samples,) or (n_samples, n_outputs_), float64
            ``var(x) y_scale_^2 >= 0`` per sample and output (1-D for one output).

        Raises
        ------
        AttributeError
            If the estimator was fitted with another ``ntk_phase`` or at a finite flow
            time.
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` is invalid or a kernel exceeds the fitted ``max_kernel_bytes``.
        """
        variance = self._predict_variance(X)[:, None]  # checks that it is fitted
        variance = variance * self.y_scale_ ** 2
        return variance[:, 0] if self.n_outputs_ == 1 else variance

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
