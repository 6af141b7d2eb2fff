"""The training loop: SGD phase, switch, NTK phase, history and divergence checks."""

import math
import time
import warnings
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._buckets import Rows, monitor_rows, padded_monitor_size, padded_rows, use_shapes
from ._devices import data_mesh, replicate
from ._diagnostics import N_TOP_EIGENVALUES, SCALAR_COLUMNS, KernelDiagnostics
from ._diagnostics import empty_row as empty_diagnostics
from ._linearized import auto_ntk_learning_rate
from ._losses import Loss
from ._mlp import params_to_jax, params_to_numpy
from ._model import initial_params
from ._network import ModelSize, forward, model_gram_bytes, network_sizes
from ._parameterization import init_params as draw_initial_params
from ._parameterization import layer_scales
from ._phase_api import NTK_MAX_EPOCHS_AUTO, PREDICT_BLOCK, PhaseSettings, network_metrics
from ._phase_api import tree_is_finite as _tree_is_finite
from ._phases import NTK_PHASES
from ._runtime import compile_seconds
from ._sgd import (PLAIN_SGD, Optimizer, compiled_batch_size, epoch_order, n_batches_per_epoch,
                   optimizer_epoch)
from ._stopping import NTKStopping
from ._switch import SWITCH_CRITERIA, SwitchConfig
from ._switch_check import (CONFIRMING_STANDARD_ERRORS, SwitchGuard, constant_score,
                            input_scale_warning, judge_switch)
from .ntk import _working_set_bytes, check_kernel_budget, kernel_nbytes

__all__ = ["TrainingConfig", "EpochInfo", "fit_hybrid", "NTK_MAX_EPOCHS_AUTO",
           "PREDICT_BLOCK", "COMPUTE_DTYPE"]

DIAGNOSTIC_COLUMNS = (*SCALAR_COLUMNS, "kernel_top_eigenvalues")
"""History columns of ``kernel_diagnostics=True`` (NaN where not computed)."""

COMPUTE_DTYPE = np.float32
"""Every computation runs in float32, whatever the input dtype."""

AUTO_LEARNING_RATE_CAP = 0.05
"""``learning_rate="auto"``: at most this SGD step."""


class TrainingConfig(NamedTuple):
    """Everything the training loop reads, built by the estimator from its validated
    parameters (numbers as Python ``int`` and ``float``); the fields are the
    estimator's parameters of the same names (see ``HybridNTKClassifier``), with
    ``loss`` the estimator's :class:`skntk._losses.Loss`, ``switch_threshold``
    ``None`` for ``"auto"``, ``hidden_layer_sizes`` a tuple of ints, and
    ``learning_rate``, ``ntk_epochs`` and ``ntk_learning_rate`` a number or
    ``"auto"``, and ``model`` the user's model (``None``: the built-in MLP of
    ``hidden_layer_sizes``, ``activation`` and ``parameterization``). No field but
    the optimiser's and ``model`` has a default: the estimator's are the defaults."""

    loss: Loss
    hidden_layer_sizes: tuple
    activation: str
    parameterization: str
    learning_rate: Any
    batch_size: int
    max_sgd_epochs: int
    switch: Any
    switch_window: int
    switch_threshold: Any
    switch_epoch: int
    ntk_monitor_size: int
    ntk_phase: Any
    ntk_epochs: Any
    ntk_learning_rate: Any
    ntk_solver: str
    ntk_tol: float
    ntk_patience: int
    ntk_ridge: float
    kernel_ridge: float
    kernel_solver: str
    kernel_offset: str
    kernel_tol: float
    kernel_max_iter: int
    max_kernel_bytes: Any
    devices: Any
    verbose: int
    kernel_diagnostics: bool
    solver: str = "sgd"
    momentum: float = 0.0
    nesterovs_momentum: bool = True
    alpha: float = 0.0
    model: Any = None

    @property
    def optimizer(self):
        """The SGD phase's :class:`skntk._sgd.Optimizer`."""
        return Optimizer(self.solver, self.momentum, self.nesterovs_momentum, self.alpha)

    @property
    def scouting(self):
        """A threshold of 0: the criterion only records its statistic."""
        return self.switch_threshold == 0


class _History:
    """Per-epoch records and the optional one-line-per-epoch report."""

    def __init__(self, config, start, auto_learning_rate=False, compile_start=None):
        self.rows = []
        self.config = config
        # learning_rate="auto": config.learning_rate holds the step it chose.
        self.auto_learning_rate = auto_learning_rate
        self.start = start
        # Seconds of compilation before the fit began (compile_seconds()).
        self.compile_start = compile_seconds() if compile_start is None else compile_start
        score = config.loss.score_name
        self.train_score, self.val_score = f"train_{score}", f"val_{score}"
        # The short name of the score in the verbose lines.
        self.score_label = {"accuracy": "acc"}.get(score, score)

    def record(self, phase, metrics, statistic, kernel_iterations=math.nan,
               threshold=math.nan, diagnostics=None):
        """One history row; ``metrics``: ``(train_loss, train_score, val_loss,
        val_score)``, floats or an array of 4 (NaN without validation data), see
        :func:`skntk._phase_api.network_metrics`; ``threshold``: the switch threshold
        the statistic was compared with; ``diagnostics``: the kernel diagnostics of the
        epoch (:mod:`skntk._diagnostics`; NaN when ``None``)."""
        train_loss, train_score, val_loss, val_score = (float(v) for v in np.asarray(metrics))
        if not math.isfinite(train_loss):
            raise self.divergence("the training loss", phase)
        row = {"epoch": len(self.rows) + 1, "phase": phase, "train_loss": train_loss,
               self.train_score: train_score, "val_loss": val_loss,
               self.val_score: val_score, "switch_statistic": statistic,
               "switch_threshold": threshold, "kernel_iterations": kernel_iterations,
               "elapsed_s": time.perf_counter() - self.start,
               **(diagnostics or empty_diagnostics())}
        self.rows.append(row)
        if self.config.verbose:
            label = self.score_label
            # The statistic only where it was checked; the time split into the
            # compilations of this fit and the rest (training).
            checked = "" if math.isnan(statistic) else f"switch statistic {statistic:.4g}  "
            compiling = compile_seconds() - self.compile_start
            print(f"[{phase}] epoch {row['epoch']:4d}  train loss {train_loss:.4f} "
                  f"{label} {train_score:.4f}  val loss {val_loss:.4f} {label} "
                  f"{val_score:.4f}  {checked}training {row['elapsed_s'] - compiling:.2f} s"
                  f" + compiling {compiling:.2f} s")

    def divergence(self, what, phase):
        """The ``ValueError`` for ``what`` turning non-finite in the epoch being run,
        naming the phase, the epoch and the learning rate to lower."""
        config, epoch = self.config, len(self.rows) + 1
        if phase == "sgd":
            where = f"the SGD phase at epoch {epoch}"
            name, rate = "learning_rate", config.learning_rate
        else:
            n_sgd = max((i + 1 for i, row in enumerate(self.rows) if row["phase"] == "sgd"),
                        default=0)
            where = (f"the NTK phase (ntk_phase={config.ntk_phase!r}) at epoch {epoch} "
                     f"(epoch {epoch - n_sgd} of that phase)")
            name, rate = "ntk_learning_rate", config.ntk_learning_rate
        if isinstance(rate, str):
            advice = f"Pass a small number as `{name}` (got {rate!r})"
        else:
            got = (f"'auto' chose {rate:.3g}" if phase == "sgd" and self.auto_learning_rate
                   else f"got {rate!r}")
            advice = f"Lower `{name}` ({got}; try {rate / 10:.3g} or less)"
        return ValueError(
            f"Training diverged: {what} became non-finite (NaN or inf) in {where}. "
            f"{advice}; if `X` is not "
            f"standardised, scaling it (e.g. with sklearn.preprocessing.StandardScaler) "
            f"helps too{config.loss.scaling_hint}. The estimator is left unfitted.")

    def as_arrays(self):
        keys = ("epoch", "phase", "train_loss", self.train_score, "val_loss", self.val_score,
                "switch_statistic", "switch_threshold", "kernel_iterations", "elapsed_s",
                *DIAGNOSTIC_COLUMNS)
        history = {k: np.array([row[k] for row in self.rows]) for k in keys}
        if not self.rows:
            history = {k: np.array([], dtype=float) for k in keys}
            history["kernel_top_eigenvalues"] = np.zeros((0, N_TOP_EIGENVALUES))
        history["epoch"] = history["epoch"].astype(int)
        history["phase"] = history["phase"].astype("<U3")
        return history

    def callback_view(self, params):
        """What a callback sees after the last recorded epoch: an :class:`EpochInfo`
        with read-only numpy copies of the parameters and of the history row."""
        row = dict(self.rows[-1])
        row["kernel_top_eigenvalues"] = row["kernel_top_eigenvalues"].copy()
        row["kernel_top_eigenvalues"].flags.writeable = False
        def read_only(a):
            a = np.array(a)
            a.flags.writeable = False
            return a

        arrays = jax.tree.map(read_only, params)
        return EpochInfo(row["epoch"], row["phase"], arrays, MappingProxyType(row))


class EpochInfo(NamedTuple):
    """What each of ``callbacks`` receives after every epoch of either phase.

    ``epoch``: 1-based, continuing through the NTK phase; ``phase``: ``"sgd"`` or
    ``"ntk"``; ``params``: read-only numpy arrays, the MLP's list of ``(W, b)`` or the
    user model's pytree, the network after the epoch (in the NTK phase the network
    reported as ``coefs_`` or ``params_``: ``theta* + delta`` for the linearised
    phases, ``theta*`` for the kernel phase); ``history``: a
    read-only mapping, the epoch's row of ``history_``."""

    epoch: int
    phase: str
    params: list
    history: Any


def _run_callbacks(callbacks, history, params):
    """Call every callback with the view of the last epoch; True when one asks to stop
    (returns a true value). Every callback is called, even after one asked to stop."""
    info = history.callback_view(params)
    stop = False
    for callback in callbacks:
        stop = bool(callback(info)) or stop
    return stop


def _warn_if_loss_rose(phase, loss_before, loss_after, parameter, value):
    """A phase that ends with a higher training loss than it started with has most likely
    diverged without overflowing: say so rather than return it as a result."""
    if loss_after > loss_before:
        warnings.warn(
            f"The {phase} phase raised the training loss from {loss_before:.4g} to "
            f"{loss_after:.4g}: the step size is probably too large. Lower `{parameter}` "
            f"(got {value!r}).", ConvergenceWarning)



@partial(jax.jit, static_argnames=("batch_size", "mesh", "layer_scales", "loss", "optimizer"))
def _sgd_epoch_and_metrics(params, train, val, order, n_samples, learning_rate, batch_size,
                           mesh=None, layer_scales=None, loss=None, opt_state=None,
                           optimizer=PLAIN_SGD):
    """One SGD epoch and what the loop checks and records after it, in one compiled
    program with one transfer to the host.

    Runs :func:`skntk._sgd.optimizer_epoch` with ``optimizer`` (static) on ``loss``
    (static) over ``n_samples`` samples (``train.n``; 0 runs no batch, for the metrics
    of the initial network), weighted by ``train.weights``, with the per-layer scales
    ``layer_scales`` of the parameterisation (static). Returns the parameters,
    ``[1 if every parameter is finite else 0, train_loss, train_score, val_loss,
    val_score]`` and the optimiser's state after the epoch (``opt_state``: before it,
    from :meth:`skntk._sgd.Optimizer.init` for the first).
    """
    params, opt_state = optimizer_epoch(params, opt_state, train.X, train.Y, order, n_samples,
                                        learning_rate, batch_size, mesh, layer_scales, loss,
                                        train.weights, optimizer)
    finite = _tree_is_finite(params).astype(train.X.dtype)
    return params, jnp.concatenate([finite[None], network_metrics(_network, loss, params,
                                                                  train, val, layer_scales)]), opt_state


def _network(params, X, layer_scales):
    return forward(layer_scales, params, X)


def _check_budgets(config, layer_sizes, n_samples, n_val):
    """Every kernel the fit (and prediction) will build, checked before training, each
    with what is alive beside it at its peak. The monitor kernels are released at the
    switch, so the NTK phase's kernels are counted without them.

    Returns ``(ntk_solver, kernel_solver)`` of the NTK phase
    (:meth:`skntk._phase_api.NTKPhase.resolve`, which checks the phase's own kernels)."""
    criterion = SWITCH_CRITERIA[config.switch]
    if criterion.monitor_kernels is not None or config.kernel_diagnostics:
        m = padded_monitor_size(min(config.ntk_monitor_size, n_samples),
                                config.ntk_monitor_size)
        if criterion.monitor_kernels is not None:
            kept, held_what, window_hint = criterion.monitor_kernels(config.switch_window)
        else:  # the diagnostics keep the last switch_window kernels
            window = config.switch_window
            kept, held_what, window_hint = (
                window, f"the last {window} monitor kernels, kept by kernel_diagnostics=True "
                        f"(switch_window={window})", f" or `switch_window` (got {window})")
        held = kept * kernel_nbytes(m, m, COMPUTE_DTYPE)
        itemsize = np.dtype(COMPUTE_DTYPE).itemsize
        if isinstance(layer_sizes, ModelSize):
            working = model_gram_bytes(layer_sizes, m, itemsize)
        else:
            # ntk_gram holds the new kernel, its Gram temporaries and the layer
            # factors, beside the kernels kept by the criterion.
            working = _working_set_bytes(layer_sizes, m, m, m, True, False, itemsize)
        check_kernel_budget(
            m, m, COMPUTE_DTYPE, config.max_kernel_bytes,
            what="monitor kernel",
            fix_hint=f"lower `ntk_monitor_size` (got {config.ntk_monitor_size}){window_hint}, "
                     f"or use switch='param_norm' instead of switch={config.switch!r}: it "
                     f"forms no kernel",
            extra_bytes=working, budget_name="max_kernel_bytes",
            held_bytes=held, held_what=held_what)
    return NTK_PHASES[config.ntk_phase].resolve(config, layer_sizes, n_samples, n_val)


class _Criterion:
    """The switch criterion of one fit with its state, kept across the SGD stretches
    of a fit (SGD resumes after a rejected switch with the state it had there)."""

    def __init__(self, config, params, monitor, monitor_index, Y, m, scales):
        self.criterion = SWITCH_CRITERIA[config.switch]
        self.config = SwitchConfig(config.switch_window, config.switch_threshold,
                                   config.switch_epoch, monitor, m, scales)
        self.state = self.criterion.init(params, self.config)
        self.diagnostics = (KernelDiagnostics(params, monitor, m, Y[monitor_index],
                                              config.switch_window, scales)
                            if config.kernel_diagnostics else None)
        self.threshold = math.nan

    def update(self, epoch, params, closed=False):
        """``(statistic, threshold, held, diagnostics)`` after SGD epoch ``epoch``;
        ``closed``: no switch can follow, so the statistic is not computed (NaN)."""
        statistic, threshold, held = math.nan, math.nan, False
        if not closed:
            self.state, statistic, threshold, held = self.criterion.update(
                self.state, epoch, params, self.config)
        if not math.isnan(threshold):
            self.threshold = threshold
        diagnostics = (None if self.diagnostics is None
                       else self.diagnostics.record(epoch, params))
        return statistic, threshold, held, diagnostics

    def release(self):
        """Drop the criterion's state (the monitor kernels it keeps) once no SGD epoch
        can follow, so that it is not held beside the kernels of the NTK phase."""
        self.state = self.diagnostics = None


def _sgd_phase(config, history, params, opt_state, criterion, guard, first_epoch, train, val,
               scales, mesh, batch_size, shuffle_rng, n_samples, callbacks):
    """SGD epochs from ``first_epoch`` until a switch is taken (``guard``,
    :class:`skntk._switch_check.SwitchGuard`) or the budget is spent, the optimiser
    starting from ``opt_state``; returns ``(params, opt_state, n_sgd, trigger,
    stopped_by_callback)`` with ``trigger`` the switch's (``None``: no switch)."""
    trigger, stopped_by_callback = None, False
    n_sgd = first_epoch - 1
    for epoch in range(first_epoch, config.max_sgd_epochs + 1):
        order = epoch_order(shuffle_rng, n_samples, train.X.shape[0], batch_size)
        params, report, opt_state = _sgd_epoch_and_metrics(
            params, train, val, order, n_samples, config.learning_rate, batch_size, mesh,
            scales, config.loss, opt_state, config.optimizer)
        report = np.asarray(report)
        if not report[0]:
            raise history.divergence("the parameters", "sgd")
        statistic, threshold, held, diagnostics = criterion.update(epoch, params,
                                                                    guard.closed)
        history.record("sgd", report[1:], statistic, threshold=threshold,
                       diagnostics=diagnostics)
        n_sgd = epoch
        trigger = guard.update(epoch, statistic, held, float(report[1]), float(report[2]))
        if callbacks and _run_callbacks(callbacks, history, params):
            stopped_by_callback, trigger = True, None
            if config.verbose:
                print(f"A callback ended the SGD phase at epoch {epoch}.")
            break
        if trigger is not None:
            if config.verbose:
                what = ("met" if trigger == "criterion"
                        else "stalled above its threshold: a trial switch")
                print(f"Switch criterion {config.switch!r} {what} at epoch {epoch}.")
            break
    return params, opt_state, n_sgd, trigger, stopped_by_callback


class _Attempt(NamedTuple):
    """One switch and the NTK phase from it: what the fit may end with, and its
    record (``record``, an item of ``switch_attempts_``)."""

    params_star: Any
    state: Any
    settings: Any
    stop_reason: Any
    kept_epoch: int
    final_loss: float
    val_score: float
    record: dict


def fit_hybrid(config, X, Y, X_val, Y_val, rng, init_params=None, callbacks=(),
               weights=None, val_weights=None):
    """Both phases on prepared float32 arrays; returns the fitted attributes.

    Parameters
    ----------
    config : TrainingConfig
        The estimator's validated parameters and its loss.
    X, Y : ndarray of shape (n, d) and (n, C), float32
        Training inputs and targets encoded for ``config.loss`` (one-hot classes, or
        target values).
    X_val, Y_val : ndarray or None
        Validation rows, encoded alike.
    rng : numpy.random.RandomState
        Draws the initial network, the monitor subset and the SGD shuffling.
    init_params : list of (W, b) or None
        Float32 network to start the SGD phase from instead of the random draw (which
        is still made, so that the monitor subset and the SGD order are those of a fit
        from the draw).
    callbacks : sequence of callables
        See :class:`EpochInfo`.
    weights, val_weights : ndarray of shape (n,) and (n_val,), or None
        Sample weights of the training and validation rows (positive; ``None``: 1
        each). Every loss, gradient, metric and NTK phase weights its rows by them,
        and the monitor subset is drawn with probabilities proportional to them.

    Returns
    -------
    fitted : dict
        The fitted attributes (trailing underscore), and ``monitor_index`` (rows of
        ``X``).
    """
    start, compile_start = time.perf_counter(), compile_seconds()
    n_samples, n_outputs = Y.shape
    if config.model is None:
        layer_sizes = (X.shape[1], *config.hidden_layer_sizes, n_outputs)
        # The parameterisation: the initial weights and the per-layer scales D that
        # every step and kernel applies (None for the standard one); see
        # _parameterization.
        scales = layer_scales(layer_sizes, config.parameterization, config.activation)
        drawn_params = draw_initial_params(layer_sizes, rng, config.parameterization,
                                           COMPUTE_DTYPE)
    else:
        # The user's model takes the place of the scales (see _network).
        scales = config.model
        drawn_params = params_to_numpy(initial_params(
            config.model, rng.randint(np.iinfo(np.int32).max), X.shape[1], n_outputs))
        layer_sizes = network_sizes(scales, drawn_params, X.shape[1])
    ntk_solver, kernel_solver = _check_budgets(config, layer_sizes, n_samples,
                                               0 if X_val is None else X_val.shape[0])
    phase = NTK_PHASES[config.ntk_phase].variant(ntk_solver, kernel_solver)
    # With several devices every array lives on all of them (replicated) and the
    # per-step computations split their batch over the mesh; see _devices.
    mesh = data_mesh(config.devices)
    init_params = drawn_params if init_params is None else init_params
    params = replicate(params_to_jax(init_params), mesh)
    monitor, m = None, min(config.ntk_monitor_size, n_samples)
    # The monitor subset serves the kernel criteria and the automatic steps.
    monitor_index = np.sort(rng.choice(n_samples, m, replace=False,
                                       p=None if weights is None else weights / weights.sum()))
    auto_learning_rate = config.learning_rate == "auto"
    if auto_learning_rate:
        # 1 / L of the loss at theta_0 on the monitor subset, capped.
        eta = auto_ntk_learning_rate(params, jnp.asarray(X[monitor_index]), scales,
                                     config.loss.curvature)
        config = config._replace(learning_rate=min(AUTO_LEARNING_RATE_CAP, eta))
    if SWITCH_CRITERIA[config.switch].uses_monitor or config.kernel_diagnostics:
        monitor = monitor_rows(X[monitor_index], config.ntk_monitor_size, mesh)
    # The shuffling is drawn on the host, from a generator of its own, so that it does
    # not depend on the padding (see _sgd).
    shuffle_rng = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))

    # Sample-indexed arrays are padded to a bucket size with rows of weight zero
    # (_buckets), so that fits of nearby sizes share every compiled function.
    def place(a):
        return replicate(jax.device_put(a), mesh)

    train = padded_rows(X, Y, place, weights=weights)
    val = None if X_val is None else padded_rows(X_val, Y_val, place, weights=val_weights)
    batch_size = compiled_batch_size(config.batch_size, n_samples, train.X.shape[0])
    use_shapes((layer_sizes, batch_size, train.X.shape[0], None if val is None else
                val.X.shape[0], None if monitor is None else monitor.shape[0], config.switch,
                phase, None if mesh is None else mesh.devices.size, config.parameterization,
                config.activation, config.loss.name, config.model))

    # The epoch program over no sample: the metrics of the initial network.
    no_order = np.zeros(n_batches_per_epoch(train.X.shape[0], batch_size) * batch_size, np.int32)
    _, report, _ = _sgd_epoch_and_metrics(params, train, val, no_order, 0, config.learning_rate,
                                          batch_size, mesh, scales, config.loss,
                                          config.optimizer.init(params), config.optimizer)
    initial_report = np.asarray(report)
    initial_loss = float(initial_report[1])
    if not math.isfinite(initial_loss):
        raise ValueError(
            f"The network's outputs on `X` are already non-finite at initialisation "
            f"(largest |x| = {float(np.max(np.abs(X))):.3g}): `X` is too large for "
            f"float32 computation. Standardise `X` (e.g. with "
            f"sklearn.preprocessing.StandardScaler).")

    input_scale_warning(X)
    history = _History(config, start, auto_learning_rate, compile_start)
    criterion = _Criterion(config, params, monitor, monitor_index, Y, m, scales)
    # Only a network phase stopped by its own rule can judge the switch and hand the
    # training back to SGD; the user's fixed epoch is taken as asked.
    judged = (config.switch not in (None, "fixed_epoch") and not config.scouting
              and config.ntk_epochs == "auto" and phase.padded_rows
              and phase.early_stopping and phase.lowers_training_loss)
    guard = SwitchGuard(config.switch_window, judged,
                        constant_score(config.loss.score_name, Y), initial_loss,
                        config.loss.score_name, config.max_sgd_epochs,
                        block_dead=config.switch != "fixed_epoch")
    if phase.padded_rows:
        ntk_rows = (train, val, kernel_solver)
    else:
        ntk_rows = (*(None if a is None else
                      Rows(place(a), place(b),
                           None if w is None else place(np.asarray(w, COMPUTE_DTYPE)),
                           a.shape[0])
                      for a, b, w in ((X, Y, weights), (X_val, Y_val, val_weights))),
                    kernel_solver)
    attempts = []
    sgd_time, ntk_time = time.perf_counter() - start, 0.0
    first_epoch = 1
    # SGD resumes after a rejected switch from theta* with the optimiser's state there.
    opt_state = config.optimizer.init(params)
    while True:
        sgd_start = time.perf_counter()
        params, opt_state, n_sgd, trigger, stopped_by_callback = _sgd_phase(
            config, history, params, opt_state, criterion, guard, first_epoch, train, val,
            scales, mesh, batch_size, shuffle_rng, n_samples, callbacks)
        sgd_time += time.perf_counter() - sgd_start
        ntk_start = time.perf_counter()
        if trigger is None and attempts:
            # The budget is spent after rejected switches: SGD's last state, knowingly.
            attempts.append(_unrun_phase(phase, params, history, len(history.rows), n_sgd,
                                         config, mesh, scales, ntk_rows))
            ntk_time += time.perf_counter() - ntk_start
            break
        if trigger is None:
            trigger = "callback" if stopped_by_callback else "budget"
            if not guard.warned:  # a dead network has had its own warning
                _warn_if_no_switch(config, history, stopped_by_callback)
        judge = judged and trigger in ("criterion", "stalled")
        if not judge:
            criterion.release()  # this NTK phase is final: max_kernel_bytes counts on it
        attempt = _run_phase(phase, params, history, config, mesh, scales, X, monitor_index,
                             ntk_rows, n_sgd, trigger, initial_report, callbacks, judge)
        attempts.append(attempt)
        ntk_time += time.perf_counter() - ntk_start
        confirmed = attempt.record["confirmed"]
        if confirmed is None or confirmed or attempt.stop_reason == "callback":
            break
        if _sgd_not_gaining(attempts, val, config.loss.score_standard_error):
            # SGD since the last switch is clearly behind an earlier switch's result:
            # continuing it would only spend the budget.
            if config.verbose:
                print(f"SGD is behind an earlier switch's result at epoch {n_sgd}; "
                      f"training ends.")
            break
        if n_sgd >= config.max_sgd_epochs:
            # Rejected with no budget left: SGD's state at the switch, knowingly.
            attempts.append(_unrun_phase(phase, params, history, attempt.record["switch_epoch"],
                                         n_sgd, config, mesh, scales, ntk_rows))
            break
        # Rejected: SGD resumes from theta*, as if there had been no switch.
        if config.verbose:
            print(f"The NTK phase did not confirm the switch at epoch {n_sgd}; SGD "
                  f"resumes from there.")
        guard.rearm(n_sgd)
        first_epoch = n_sgd + 1

    kept = _kept_attempt(attempts, val, config.loss.score_standard_error)
    for index, attempt in enumerate(attempts):
        attempt.record["kept"] = index == kept
    chosen = attempts[kept]
    switch_row = chosen.record["switch_epoch"]
    switch_loss = chosen.record["train_loss_switch"]
    _warn_if_loss_rose("SGD", initial_loss, switch_loss, "learning_rate", config.learning_rate)
    if phase.lowers_training_loss and chosen.record["ntk_epochs"]:
        _warn_if_loss_rose("NTK", switch_loss, chosen.final_loss, "ntk_learning_rate",
                           config.ntk_learning_rate)

    params_star = chosen.params_star
    final = phase.network(chosen.state)
    arrays = history.as_arrays()
    if config.model is None:
        network = dict(
            coefs_=[W for W, _ in final], intercepts_=[b for _, b in final],
            switch_coefs_=[W for W, _ in params_star],
            switch_intercepts_=[b for _, b in params_star],
            init_coefs_=[np.array(W) for W, _ in init_params],
            init_intercepts_=[np.array(b) for _, b in init_params])
    else:
        network = dict(params_=final, switch_params_=params_star,
                       init_params_=params_to_numpy(init_params))
    return dict(
        **network, monitor_index=monitor_index,
        history_=arrays, loss_curve_=arrays["train_loss"].tolist(),
        switch_epoch_=switch_row, switch_threshold_=criterion.threshold,
        switch_reached_=chosen.record["trigger"] == "criterion",
        switch_attempts_=[attempt.record for attempt in attempts],
        switch_epochs_=np.array([attempt.record["switch_epoch"] for attempt in attempts],
                                dtype=int),
        n_iter_=len(history.rows), sgd_time_=sgd_time, ntk_time_=ntk_time,
        learning_rate_=float(config.learning_rate),
        ntk_learning_rate_=float(chosen.settings.learning_rate), ntk_solver_=phase.ntk_solver,
        ntk_stop_reason_=chosen.stop_reason, ntk_best_epoch_=chosen.kept_epoch,
        kernel_solver_=kernel_solver, kernel_solver_info_=phase.solver_info(chosen.state),
        **phase.fitted_state(chosen.state, chosen.settings),
    )


def _warn_if_no_switch(config, history, stopped_by_callback):
    """The warning when the criterion never held within the budget."""
    if (config.switch is None or config.max_sgd_epochs == 0 or config.scouting
            or stopped_by_callback):
        return
    then = ("the NTK phase starts from the last SGD parameters"
            if config.ntk_phase is not None
            else "training ends with the last SGD parameters")
    checked = [row["switch_statistic"] for row in history.rows
               if not math.isnan(row["switch_statistic"])]
    if checked and all(math.isinf(s) for s in checked):
        advice = ("Its statistic stayed infinite: the network has not moved from "
                  "initialisation as the criterion measures it (a learning rate too small "
                  "for the data, or a model without hidden layers, which is its own "
                  "linearisation). Raise `learning_rate` or `max_sgd_epochs`, or choose "
                  "switch='fixed_epoch'.")
    else:
        advice = "Raise `max_sgd_epochs` or `switch_threshold`."
    warnings.warn(
        f"The switch criterion {config.switch!r} did not hold within max_sgd_epochs="
        f"{config.max_sgd_epochs}; {then}. {advice}", ConvergenceWarning)


def _switch_point(history, initial_report):
    """``(history row, training loss, validation score)`` of the switch point: the
    last recorded epoch (row 0 and the initial network before any)."""
    if not history.rows:
        return 0, float(initial_report[1]), float(initial_report[4])
    row = history.rows[-1]
    return len(history.rows), row["train_loss"], row[history.val_score]


def _phase_settings(config, mesh, scales, n_epochs, learning_rate=math.nan):
    return PhaseSettings(learning_rate, n_epochs, config.kernel_ridge,
                         config.max_kernel_bytes, mesh, config.kernel_tol,
                         config.kernel_max_iter, config.kernel_offset, config.ntk_ridge,
                         scales, config.loss, None)


def _run_phase(phase, params, history, config, mesh, scales, X, monitor_index, rows,
               n_sgd, trigger, initial_report, callbacks, judge):
    """The NTK phase from ``params`` (theta*, after ``n_sgd`` SGD epochs); with
    ``judge``, its verdict on the switch (:func:`skntk._switch_check.judge_switch`)."""
    ntk_train, ntk_val, kernel_solver = rows
    switch_row, switch_loss, switch_val_score = _switch_point(history, initial_report)
    auto_epochs = config.ntk_epochs == "auto"
    n_epochs = phase.auto_epochs if auto_epochs else config.ntk_epochs
    settings = _phase_settings(config, mesh, scales, n_epochs)._replace(
        kernel_solver=kernel_solver)
    learning_rate = config.ntk_learning_rate
    if learning_rate == "auto":
        subset = jnp.asarray(X[monitor_index])
        learning_rate = phase.auto_learning_rate(
            settings, partial(auto_ntk_learning_rate, params, subset, scales))
    settings = settings._replace(learning_rate=learning_rate)
    state = phase.start(params, ntk_train.X, ntk_train.Y, settings,
                        weights=ntk_train.weights, val=ntk_val)
    state, stop_reason, kept_epoch, final_loss = _ntk_phase(
        phase, state, settings, history, switch_row, ntk_train, ntk_val, switch_loss,
        switch_val_score, auto_epochs, config, callbacks)
    kept_val_score = (history.rows[switch_row + kept_epoch - 1][history.val_score]
                      if kept_epoch else switch_val_score)
    switch_val_loss = history.rows[switch_row - 1]["val_loss"] if switch_row else math.nan
    kept_val_loss = (history.rows[switch_row + kept_epoch - 1]["val_loss"] if kept_epoch
                     else switch_val_loss)
    record = _attempt_record(switch_row, n_sgd, trigger, len(history.rows) - switch_row,
                             kept_epoch, stop_reason, switch_loss, final_loss,
                             switch_val_score, kept_val_score)
    record.update(val_loss_switch=float(switch_val_loss), val_loss_kept=float(kept_val_loss))
    if judge:
        standard_error = (None if ntk_val is None else partial(
            _score_standard_error, config.loss.score_standard_error, ntk_val.n))
        verdict = judge_switch(kept_epoch, switch_loss, final_loss, switch_val_score,
                               kept_val_score, standard_error)
        record["confirmed"] = verdict.confirmed
    return _Attempt(params_to_numpy(params), state, settings, stop_reason, kept_epoch,
                    final_loss, kept_val_score, record)


def _unrun_phase(phase, params, history, switch_row, n_sgd, config, mesh, scales, rows):
    """The end of the budget after rejected switches: the NTK phase's model at SGD's
    last parameters ``params`` (history row ``switch_row``, after ``n_sgd`` SGD
    epochs), with no epoch run: the network itself."""
    ntk_train, ntk_val, kernel_solver = rows
    row = history.rows[switch_row - 1]
    switch_loss, switch_val_score = row["train_loss"], row[history.val_score]
    settings = _phase_settings(config, mesh, scales, 0)._replace(kernel_solver=kernel_solver)
    state = phase.start(params, ntk_train.X, ntk_train.Y, settings,
                        weights=ntk_train.weights, val=ntk_val)
    record = _attempt_record(switch_row, n_sgd, "budget", 0, 0, None, switch_loss,
                             switch_loss, switch_val_score, switch_val_score)
    record.update(val_loss_switch=row["val_loss"], val_loss_kept=row["val_loss"])
    return _Attempt(params_to_numpy(params), state, settings, None, 0, switch_loss,
                    switch_val_score, record)


def _attempt_record(switch_row, n_sgd, trigger, ntk_epochs, kept_epoch, stop_reason,
                    switch_loss, kept_loss, switch_val_score, kept_val_score):
    """An item of ``switch_attempts_`` (``"confirmed"`` None: not judged)."""
    return {"switch_epoch": int(switch_row), "sgd_epochs": int(n_sgd), "trigger": trigger,
            "ntk_epochs": int(ntk_epochs), "ntk_best_epoch": int(kept_epoch),
            "ntk_stop_reason": stop_reason, "train_loss_switch": float(switch_loss),
            "train_loss_kept": float(kept_loss), "val_score_switch": float(switch_val_score),
            "val_score_kept": float(kept_val_score), "confirmed": None,
            "sgd_gain": math.nan, "kept": False}


def _sgd_not_gaining(attempts, val, score_standard_error):
    """Whether SGD, resumed after the earlier rejected switches, is clearly behind the
    best earlier attempt's result at the last switch: its validation score lower by
    more than one standard error (of that result's score) and its validation loss no
    lower. Records the score difference in the last attempt's ``"sgd_gain"``.

    Ending as soon as the score did not rise ended ``anes96`` of bench_hybrid.py (71
    validation rows, one standard error 3 points) 1.6 points below plain SGD on
    average and 3.8 in one seed, and two seeds of the noisy moons 0.4 and 1.6 below:
    differences a small validation set does not resolve. SGD then goes on, at the
    cost of its remaining epochs."""
    if val is None or len(attempts) < 2:
        return False
    best = max(attempts[:-1], key=lambda attempt: attempt.val_score)
    record = attempts[-1].record
    record["sgd_gain"] = record["val_score_switch"] - best.val_score
    return (record["sgd_gain"] < -score_standard_error(best.val_score, val.n)
            and not record["val_loss_switch"] < best.record["val_loss_kept"])


def _kept_attempt(attempts, val, score_standard_error):
    """Index of the attempt the fit ends with: the last, unless an earlier one has a
    validation score higher by more than ``CONFIRMING_STANDARD_ERRORS`` of the last's
    standard errors (the best of several noisy scores is biased upwards). A lower
    validation loss alone does not count: on ``load_diabetes`` (33 validation rows)
    an NTK state with the same validation R^2 as SGD's last state and a loss lower in
    the fourth digit was 0.11 below it in test R^2."""
    last = len(attempts) - 1
    if val is None or last == 0:
        return last
    score = attempts[last].val_score
    best = max(range(last), key=lambda i: (attempts[i].val_score, i))
    margin = CONFIRMING_STANDARD_ERRORS * score_standard_error(score, val.n)
    if attempts[best].val_score > score + margin:
        return best
    return last


def _score_standard_error(standard_error, n, score):
    return standard_error(score, n)


def _ntk_phase(phase, state, settings, history, n_sgd, train, val, switch_loss,
               switch_val_score, auto_epochs, config, callbacks):
    """The epochs of the NTK phase from its start state; returns ``(kept state,
    stop reason, kept epoch, training loss of the kept state)`` (``(state, None, 0,
    switch_loss)`` for a phase without epochs)."""
    epochs = phase.epochs(settings)
    if not len(epochs):
        return state, None, 0, switch_loss
    tolerance = (None if val is None else
                 partial(_score_standard_error, config.loss.score_standard_error, val.n))
    stopping = NTKStopping(auto_epochs and phase.early_stopping, settings.n_epochs,
                           config.ntk_tol, config.ntk_patience, state, switch_loss,
                           switch_val_score, tolerance)
    for count, epoch in enumerate(epochs, start=1):
        state, report = phase.step_and_report(state, epoch, settings, train, val)
        if not report[0]:
            raise history.divergence(phase.diverging_part, "ntk")
        history.record("ntk", report[1:], math.nan, phase.iterations(state))
        row = history.rows[-1]
        stop = stopping.update(count, state, row["train_loss"], row[history.val_score])
        if callbacks and _run_callbacks(callbacks, history, phase.network(state)):
            if not stop:
                stopping.interrupt()
            stop = True
        if stop:
            break
    state = stopping.kept(state)
    final_loss = switch_loss
    if stopping.kept_epoch:
        final_loss = history.rows[n_sgd + stopping.kept_epoch - 1]["train_loss"]
    if config.verbose:
        print(f"NTK phase stopped ({stopping.reason}) after {len(history.rows) - n_sgd} "
              f"epochs; kept the state of its epoch {stopping.kept_epoch}.")
    return state, stopping.reason, stopping.kept_epoch, final_loss
