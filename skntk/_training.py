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
from ._mlp import logits_loss_and_accuracy, mlp_forward, params_to_jax, params_to_numpy
from ._parameterization import init_params as draw_initial_params
from ._parameterization import layer_scales
from ._kernel_phase import KernelState, MatrixFreeState, check_kernel_phase_budget
from ._linearized import auto_ntk_learning_rate
from ._phases import NoPhase, PhaseSettings, phase_class
from ._sgd import compiled_batch_size, epoch_order, n_batches_per_epoch, sgd_epoch
from ._stopping import NTKStopping
from ._switch import KERNEL_CRITERIA, SWITCH_CRITERIA, SwitchConfig
from .ntk import _working_set_bytes, check_kernel_budget, kernel_nbytes

DIAGNOSTIC_COLUMNS = (*SCALAR_COLUMNS, "kernel_top_eigenvalues")
"""History columns of ``kernel_diagnostics=True`` (NaN where not computed)."""

NTK_MAX_EPOCHS_AUTO = 100
"""Epoch cap of the NTK phase under ``ntk_epochs="auto"``."""

COMPUTE_DTYPE = np.float32
"""Every computation runs in float32, whatever the input dtype."""

PREDICT_BLOCK = 256
"""Rows per prediction call: one compiled shape, and each sample's logits do not depend
on how many others are predicted with it."""


class _History:
    """Per-epoch records and the optional one-line-per-epoch report."""

    def __init__(self, est, start):
        self.rows = []
        self.est = est
        self.start = start

    def record(self, phase, metrics, statistic, kernel_iterations=math.nan,
               threshold=math.nan, diagnostics=None):
        """One history row; ``metrics``: ``(train_loss, train_accuracy, val_loss,
        val_accuracy)``, floats or an array of 4 (NaN without validation data), see
        :func:`_network_metrics` and :func:`_host_metrics`; ``threshold``: the switch
        threshold the statistic was compared with; ``diagnostics``: the kernel
        diagnostics of the epoch (:mod:`skntk._diagnostics`; NaN when ``None``)."""
        train_loss, train_acc, val_loss, val_acc = (float(v) for v in np.asarray(metrics))
        if not math.isfinite(train_loss):
            raise self.divergence("the training loss", phase)
        row = dict(epoch=len(self.rows) + 1, phase=phase, train_loss=train_loss,
                   train_accuracy=train_acc, val_loss=val_loss, val_accuracy=val_acc,
                   switch_statistic=statistic, switch_threshold=threshold,
                   kernel_iterations=kernel_iterations,
                   elapsed_s=time.perf_counter() - self.start,
                   **(diagnostics or empty_diagnostics()))
        self.rows.append(row)
        if self.est.verbose:
            print(f"[{phase}] epoch {row['epoch']:4d}  train loss {train_loss:.4f} "
                  f"acc {train_acc:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  "
                  f"switch statistic {statistic:.4g}  {row['elapsed_s']:.2f} s")

    def divergence(self, what, phase):
        """The ``ValueError`` for ``what`` turning non-finite in the epoch being run,
        naming the phase, the epoch and the learning rate to lower."""
        est, epoch = self.est, len(self.rows) + 1
        if phase == "sgd":
            where = f"the SGD phase at epoch {epoch}"
            name, rate = "learning_rate", est.learning_rate
        else:
            n_sgd = sum(row["phase"] == "sgd" for row in self.rows)
            where = (f"the NTK phase (ntk_phase={est.ntk_phase!r}) at epoch {epoch} "
                     f"(epoch {epoch - n_sgd} of that phase)")
            name, rate = "ntk_learning_rate", est.ntk_learning_rate
        if isinstance(rate, str):
            advice = f"Pass a small number as `{name}` (got {rate!r})"
        else:
            advice = f"Lower `{name}` (got {rate!r}; try {rate / 10:.3g} or less)"
        return ValueError(
            f"Training diverged: {what} became non-finite (NaN or inf) in {where}. "
            f"{advice}; if `X` is not "
            f"standardised, scaling it (e.g. with sklearn.preprocessing.StandardScaler) "
            f"helps too. The estimator is left unfitted.")

    def as_arrays(self):
        keys = ("epoch", "phase", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
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
        arrays = []
        for W, b in params:
            W, b = np.array(W), np.array(b)
            W.flags.writeable = b.flags.writeable = False
            arrays.append((W, b))
        return EpochInfo(row["epoch"], row["phase"], arrays, MappingProxyType(row))


class EpochInfo(NamedTuple):
    """What each of ``callbacks`` receives after every epoch of either phase.

    ``epoch``: 1-based, continuing through the NTK phase; ``phase``: ``"sgd"`` or
    ``"ntk"``; ``params``: list of read-only ``(W, b)`` numpy arrays, the network after
    the epoch (in the NTK phase the network reported as ``coefs_``: ``theta* + delta``
    for the linearised phases, ``theta*`` for the kernel phase); ``history``: a
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


def _solver_iterations(state):
    """Krylov iterations behind the matrix-free kernel phase's outputs (NaN otherwise)."""
    if isinstance(state, MatrixFreeState):
        return float(np.max(state.info.get("iterations", 0)))
    return math.nan


def _host_metrics(logits_fn, state, train, val):
    """``(train_loss, train_accuracy, val_loss, val_accuracy)`` of a model whose
    ``logits_fn(state, X)`` runs on the host (the kernel phase); ``train`` and ``val``
    are :class:`skntk._buckets.Rows`, ``val`` may be ``None`` (NaN)."""
    values = []
    for rows in (train, val):
        if rows is None:
            values += [math.nan, math.nan]
        else:
            loss, acc = logits_loss_and_accuracy(logits_fn(state, rows.X), rows.Y, rows.weights)
            values += [float(loss), float(acc)]
    return values


@partial(jax.jit, static_argnums=0)
def _network_metrics(logits_fn, state, train, val):
    """``[train_loss, train_accuracy, val_loss, val_accuracy]`` of a model whose
    ``logits_fn(state, X)`` is traceable (the network, or a network phase's model), in
    one compiled program per model and bucket. ``train`` and ``val`` are
    :class:`skntk._buckets.Rows` (their padding rows weigh zero); ``val`` may be
    ``None`` (NaN)."""
    values = list(logits_loss_and_accuracy(logits_fn(state, train.X), train.Y,
                                           train.weights))
    if val is None:
        values += [jnp.nan, jnp.nan]
    else:
        values += list(logits_loss_and_accuracy(logits_fn(state, val.X), val.Y, val.weights))
    return jnp.stack(values)


@jax.jit
def _tree_is_finite(tree):
    """Whether every leaf is finite: one scalar to the host. ``x * 0`` is 0 for a finite
    ``x`` and NaN for inf or NaN, so one float sum per leaf decides (it cannot overflow,
    and compiles several times faster than boolean reductions)."""
    return jnp.isfinite(sum(jnp.sum(leaf * 0) for leaf in jax.tree.leaves(tree)))


@partial(jax.jit, static_argnames=("batch_size", "mesh", "layer_scales"))
def _sgd_epoch_and_metrics(params, train, val, order, n_samples, learning_rate, batch_size,
                           mesh=None, layer_scales=None):
    """One SGD epoch and what the loop checks and records after it, in one compiled
    program with one transfer to the host.

    Runs :func:`skntk._sgd.sgd_epoch` over ``n_samples`` samples (``train.n``; 0 runs no
    batch, for the metrics of the initial network), with the per-layer scales
    ``layer_scales`` of the parameterisation (static). Returns the parameters and
    ``[1 if every parameter is finite else 0, train_loss, train_accuracy, val_loss,
    val_accuracy]``.
    """
    params = sgd_epoch(params, train.X, train.Y, order, n_samples, learning_rate, batch_size,
                       mesh, layer_scales)
    finite = _tree_is_finite(params).astype(train.X.dtype)
    return params, jnp.concatenate([finite[None], _network_metrics(mlp_forward, params, train,
                                                                   val)])


def _nonfinite_part(state):
    """What of an NTK-phase state holds NaN or inf, or ``None`` when all is finite."""
    if isinstance(state, (KernelState, MatrixFreeState)):
        finite = np.isfinite(state.coefficients).all() and np.isfinite(state.train_logits).all()
        return None if finite else "the kernel-flow coefficients"
    return None if bool(_tree_is_finite(state.params)) else "the parameters"


def _monitor_kernels_kept(est):
    """The monitor kernels the switch criterion keeps from epoch to epoch, alive until
    the end of the SGD phase: ``(count, description, fix)``, with ``fix`` the parameter
    besides ``ntk_monitor_size`` that lowers the count ("" if none)."""
    if est.switch == "ntk_norm":
        return 1, "K_0, the monitor kernel at initialisation", ""
    if est.switch == "kernel_velocity":
        return 2, ("K_0 and the monitor kernel of the last check, kept by "
                   "switch='kernel_velocity'"), ""
    return (est.switch_window,
            f"the last {est.switch_window} monitor kernels, kept by switch={est.switch!r} "
            f"(switch_window={est.switch_window})",
            f" or `switch_window` (got {est.switch_window})")


def _check_budgets(est, layer_sizes, n_samples, n_val):
    """Every kernel the fit (and prediction) will build, checked before training, each
    with what is alive beside it at its peak. The monitor kernels are released at the
    switch, so the NTK phase's kernels are counted without them.

    Returns the kernel-phase solver, ``"dense"`` or ``"matrix_free"`` (``None`` for the
    other phases): with ``kernel_solver="auto"``, matrix-free exactly when the dense
    kernels would exceed ``max_kernel_bytes``."""
    if est.switch in KERNEL_CRITERIA or est.kernel_diagnostics:
        m = padded_monitor_size(min(est.ntk_monitor_size, n_samples), est.ntk_monitor_size)
        kept, held_what, window_hint = _monitor_kernels_kept(est)
        held = kept * kernel_nbytes(m, m, COMPUTE_DTYPE)
        # ntk_gram holds the new kernel, its Gram temporaries and the layer factors,
        # beside the kernels kept by the criterion.
        working = _working_set_bytes(layer_sizes, m, m, m, True, False,
                                     np.dtype(COMPUTE_DTYPE).itemsize)
        check_kernel_budget(
            m, m, COMPUTE_DTYPE, est.max_kernel_bytes,
            what="monitor kernel",
            fix_hint=f"lower `ntk_monitor_size` (got {est.ntk_monitor_size}){window_hint}, "
                     f"or use switch='param_norm' instead of switch={est.switch!r}: it "
                     f"forms no kernel",
            extra_bytes=working, budget_name="max_kernel_bytes",
            held_bytes=held, held_what=held_what)
    if est.ntk_phase != "kernel":
        return None
    if est.kernel_solver == "matrix_free":
        return "matrix_free"
    try:
        check_kernel_phase_budget(layer_sizes, n_samples, est.max_kernel_bytes,
                                  n_val=n_val, n_predict=PREDICT_BLOCK)
    except ValueError:
        if est.kernel_solver == "dense":
            raise
        return "matrix_free"  # "auto": too large to form, so never formed
    return "dense"


def fit_hybrid(est, X, Y, X_val, Y_val, layers, rng, init_params=None, callbacks=()):
    """Both phases on prepared float32 arrays; returns the fitted attributes.

    ``init_params``: list of float32 ``(W, b)`` to start the SGD phase from instead of
    the random draw (which is still made, so that the monitor subset and the SGD order
    are those of a fit from the draw); ``callbacks``: sequence of callables, see
    :class:`EpochInfo`."""
    start = time.perf_counter()
    n_samples, n_classes = Y.shape
    layer_sizes = (X.shape[1], *layers, n_classes)
    kernel_solver = _check_budgets(est, layer_sizes, n_samples,
                                   0 if X_val is None else X_val.shape[0])
    # With several devices every array lives on all of them (replicated) and the
    # per-step computations split their batch over the mesh; see _devices.
    mesh = data_mesh(est.devices)
    # The parameterisation: the initial weights and the per-layer scales D that every
    # step and kernel applies (None for the standard one); see _parameterization.
    scales = layer_scales(layer_sizes, est.parameterization)
    drawn_params = draw_initial_params(layer_sizes, rng, est.parameterization, COMPUTE_DTYPE)
    init_params = drawn_params if init_params is None else init_params
    params = replicate(params_to_jax(init_params), mesh)
    monitor, m = None, min(est.ntk_monitor_size, n_samples)
    # The monitor subset serves the kernel criteria and the automatic NTK step.
    monitor_index = np.sort(rng.choice(n_samples, m, replace=False))
    if est.switch in KERNEL_CRITERIA or est.kernel_diagnostics:
        monitor = monitor_rows(X[monitor_index], est.ntk_monitor_size, mesh)
    # The shuffling is drawn on the host, from a generator of its own, so that it does
    # not depend on the padding (see _sgd).
    shuffle_rng = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))

    # Sample-indexed arrays are padded to a bucket size with rows of weight zero
    # (_buckets), so that fits of nearby sizes share every compiled function.
    def place(a):
        return replicate(jax.device_put(a), mesh)

    train = padded_rows(X, Y, place)
    val = None if X_val is None else padded_rows(X_val, Y_val, place)
    batch_size = compiled_batch_size(est.batch_size, n_samples, train.X.shape[0])
    use_shapes((layer_sizes, batch_size, train.X.shape[0], None if val is None else
                val.X.shape[0], None if monitor is None else monitor.shape[0], est.switch,
                est.ntk_phase, kernel_solver, None if mesh is None else mesh.devices.size,
                est.parameterization))
    learning_rate = float(est.learning_rate)

    # The epoch program over no sample: the metrics of the initial network.
    no_order = np.zeros(n_batches_per_epoch(train.X.shape[0], batch_size) * batch_size, np.int32)
    _, report = _sgd_epoch_and_metrics(params, train, val, no_order, 0, learning_rate,
                                       batch_size, mesh, scales)
    initial_report = np.asarray(report)
    initial_loss = float(initial_report[1])
    if not math.isfinite(initial_loss):
        raise ValueError(
            f"The network's outputs on `X` are already non-finite at initialisation "
            f"(largest |x| = {float(np.max(np.abs(X))):.3g}): `X` is too large for "
            f"float32 computation. Standardise `X` (e.g. with "
            f"sklearn.preprocessing.StandardScaler).")

    n_sgd = 0
    history = _History(est, start)
    criterion = SWITCH_CRITERIA[est.switch]
    config = SwitchConfig(est.switch_window,
                          None if est.switch_threshold == "auto" else float(est.switch_threshold),
                          est.switch_epoch, monitor, m, scales)
    state = criterion.init(params, config)
    diagnostics = (KernelDiagnostics(params, monitor, m, Y[monitor_index], est.switch_window,
                                     scales)
                   if est.kernel_diagnostics else None)
    switched = stopped_by_callback = False
    threshold = math.nan
    for epoch in range(1, est.max_sgd_epochs + 1):
        order = epoch_order(shuffle_rng, n_samples, train.X.shape[0], batch_size)
        params, report = _sgd_epoch_and_metrics(params, train, val, order, n_samples,
                                                learning_rate, batch_size, mesh, scales)
        report = np.asarray(report)
        if not report[0]:
            raise history.divergence("the parameters", "sgd")
        state, statistic, epoch_threshold, switched = criterion.update(state, epoch, params,
                                                                       config)
        if not math.isnan(epoch_threshold):
            threshold = epoch_threshold
        history.record("sgd", report[1:], statistic, threshold=epoch_threshold,
                       diagnostics=None if diagnostics is None else diagnostics.record(epoch,
                                                                                     params))
        n_sgd = epoch
        if callbacks and _run_callbacks(callbacks, history, params):
            stopped_by_callback = True
            if est.verbose:
                print(f"A callback ended the SGD phase at epoch {epoch}.")
            break
        if switched:
            if est.verbose:
                print(f"Switch criterion {est.switch!r} met at epoch {epoch}.")
            break
    scouting = est.switch_threshold != "auto" and float(est.switch_threshold) == 0
    if (est.switch is not None and not switched and est.max_sgd_epochs > 0 and not scouting
            and not stopped_by_callback):
        then = ("the NTK phase starts from the last SGD parameters" if est.ntk_phase is not None
                else "training ends with the last SGD parameters")
        warnings.warn(
            f"The switch criterion {est.switch!r} did not hold within max_sgd_epochs="
            f"{est.max_sgd_epochs}; {then}. Raise `max_sgd_epochs` or `switch_threshold`.",
            ConvergenceWarning)
    # The criterion's monitor kernels are not needed after the switch: released here, they
    # are not held beside the kernels of the NTK phase (see _check_budgets).
    del state, diagnostics
    sgd_time = time.perf_counter() - start
    last_row = history.rows[-1] if history.rows else None
    switch_loss = last_row["train_loss"] if last_row else initial_loss
    _warn_if_loss_rose("SGD", initial_loss, switch_loss, "learning_rate", est.learning_rate)

    ntk_start = time.perf_counter()
    ntk_solver = _resolve_ntk_solver(est)
    phase = phase_class(est.ntk_phase, kernel_solver, ntk_solver)
    auto_epochs = est.ntk_epochs == "auto"
    n_epochs = est.ntk_epochs
    if auto_epochs:
        n_epochs = math.inf if est.ntk_phase == "kernel" else NTK_MAX_EPOCHS_AUTO
    learning_rate = _resolve_ntk_learning_rate(est, ntk_solver, params, X, monitor_index,
                                               scales)
    settings = PhaseSettings(learning_rate, n_epochs, float(est.kernel_ridge),
                             est.max_kernel_bytes, mesh, float(est.kernel_tol),
                             int(est.kernel_max_iter), est.kernel_offset,
                             float(est.ntk_ridge) if est.ntk_phase == "linearized" else 0.0,
                             scales)
    if issubclass(phase, NoPhase):
        # Network phases: the padded rows, masked by their weights.
        ntk_train, ntk_val = train, val
        phase_state = phase.start(params, train.X, train.Y, settings, weights=train.weights,
                                  val=val)
        phase_metrics = partial(_network_metrics, phase.logits)
    else:
        # The kernel phase works on the real rows only: its kernels and solvers are
        # exact on them and sized to them anyway.
        ntk_train, ntk_val = (None if a is None else Rows(place(a), place(b), None, a.shape[0])
                              for a, b in ((X, Y), (X_val, Y_val)))
        phase_state = phase.start(params, ntk_train.X, ntk_train.Y, settings)
        phase_metrics = partial(_host_metrics, phase.logits)

    stop_reason, best_epoch, final_loss = None, 0, switch_loss
    if est.ntk_phase is not None:
        switch_val_score = last_row["val_accuracy"] if last_row else float(initial_report[4])
        # The kernel phase has no iterations to stop early: "auto" is its closed form.
        stopping = NTKStopping(auto_epochs and est.ntk_phase != "kernel", n_epochs,
                               float(est.ntk_tol), int(est.ntk_patience), phase_state,
                               switch_loss, switch_val_score)
        for count, epoch in enumerate(phase.epochs(settings), start=1):
            if hasattr(phase, "step_and_report"):
                # The step, its finiteness and its metrics in one program.
                phase_state, report = phase.step_and_report(phase_state, settings)
                report = np.asarray(report)
                if not report[0]:
                    raise history.divergence("the parameters", "ntk")
                metrics = report[1:]
            else:
                phase_state = phase.step(phase_state, epoch, settings)
                what = _nonfinite_part(phase_state)
                if what is not None:
                    raise history.divergence(what, "ntk")
                metrics = phase_metrics(phase_state, ntk_train, ntk_val)
            history.record("ntk", metrics, math.nan, _solver_iterations(phase_state))
            row = history.rows[-1]
            stop = stopping.update(count, phase_state, row["train_loss"], row["val_accuracy"])
            if callbacks and _run_callbacks(callbacks, history, phase.network(phase_state)):
                if not stop:
                    stopping.interrupt()
                stop = True
            if stop:
                break
        phase_state = stopping.kept(phase_state)
        stop_reason, best_epoch = stopping.reason, stopping.kept_epoch
        if best_epoch:
            final_loss = history.rows[n_sgd + best_epoch - 1]["train_loss"]
        if est.verbose:
            print(f"NTK phase stopped ({stop_reason}) after {len(history.rows) - n_sgd} "
                  f"epochs; kept the state of its epoch {best_epoch}.")
    ntk_time = time.perf_counter() - ntk_start
    if est.ntk_phase in ("frozen_jacobian", "linearized"):
        # The kernel phase minimises the squared error, so its cross-entropy may rise.
        _warn_if_loss_rose("NTK", switch_loss, final_loss, "ntk_learning_rate",
                           est.ntk_learning_rate)

    params_star = params_to_numpy(params)
    final = phase.network(phase_state)
    arrays = history.as_arrays()
    return dict(
        coefs_=[W for W, _ in final], intercepts_=[b for _, b in final],
        switch_coefs_=[W for W, _ in params_star], switch_intercepts_=[b for _, b in params_star],
        init_coefs_=[np.array(W) for W, _ in init_params],
        init_intercepts_=[np.array(b) for _, b in init_params], monitor_index=monitor_index,
        history_=arrays, loss_curve_=arrays["train_loss"].tolist(),
        switch_epoch_=n_sgd, switch_threshold_=threshold, switch_reached_=bool(switched),
        n_iter_=len(history.rows), sgd_time_=sgd_time, ntk_time_=ntk_time,
        ntk_learning_rate_=learning_rate, ntk_solver_=ntk_solver,
        ntk_stop_reason_=stop_reason, ntk_best_epoch_=best_epoch,
        _ntk_extra=phase.extra_state(phase_state), kernel_solver_=kernel_solver,
        kernel_solver_info_=getattr(phase_state, "info", None),
    )


def _resolve_ntk_solver(est):
    """``"lbfgs"`` or ``"gd"`` for ``"linearized"``, ``"gd"`` for ``"frozen_jacobian"``,
    ``None`` for the other phases."""
    if est.ntk_phase == "linearized":
        return "lbfgs" if est.ntk_solver in ("auto", "lbfgs") else "gd"
    if est.ntk_phase == "frozen_jacobian":
        return "gd"
    return None


def _resolve_ntk_learning_rate(est, ntk_solver, params, X, monitor_index, scales=None):
    """``ntk_learning_rate`` as a float; ``"auto"`` from the NTK's largest eigenvalue on
    the monitor subset (NaN where no step is taken: L-BFGS, whose line search sets
    every step, and kernel regression at infinite flow time); ``scales``: the
    parameterisation's ``D``, so that the kernel is ``J D J^T``."""
    if est.ntk_learning_rate != "auto":
        return float(est.ntk_learning_rate)
    closed_form = est.ntk_phase == "kernel" and (est.ntk_epochs == "auto"
                                                  or math.isinf(est.ntk_epochs))
    if est.ntk_phase is None or ntk_solver == "lbfgs" or closed_form:
        return math.nan
    subset = jnp.asarray(X[monitor_index])
    eta = auto_ntk_learning_rate(params, subset, scales)
    if est.ntk_phase == "kernel":
        # The squared error has twice the curvature bound of the cross-entropy
        # (Hessian J^T J / N rather than J^T H J / N with H <= I/2).
        return eta / 2
    if est.ntk_phase == "linearized":
        return 1.0 / (1.0 / eta + float(est.ntk_ridge))  # the ridge adds to L
    return eta
