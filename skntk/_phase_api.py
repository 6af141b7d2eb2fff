"""The interface of an NTK phase, its settings and the metrics every phase reports.

An NTK phase continues training from the switch point ``theta*``. It is a class of
static and class methods (no instances), derived from :class:`NTKPhase`, and one
entry of the registry :data:`skntk._phases.NTK_PHASES`, keyed by the value of the
``ntk_phase`` parameter. The training loop (:func:`skntk._training.fit_hybrid`) and the
estimators use only the methods and attributes below, so a new phase is one module
with one such class and one registry entry.

Lifecycle, as the training loop runs it::

    ntk_solver, kernel_solver = Phase.resolve(config, layer_sizes, n_train, n_val)
    phase = Phase.variant(ntk_solver, kernel_solver)   # the implementation
    settings = PhaseSettings(..., kernel_solver=kernel_solver)  # epochs, step, loss, ...
    state = phase.start(params_star, X, Y, settings, weights=..., val=...)
    for epoch in phase.epochs(settings):
        state, report = phase.step_and_report(state, epoch, settings, train, val)
        # report: [finite, train_loss, train_score, val_loss, val_score]
    fitted = phase.fitted_state(state, settings)         # public fitted attributes
    coefs = phase.network(state)                         # coefs_ / intercepts_

and prediction, from the fitted attributes alone (``fitted``: the phase's
:attr:`NTKPhase.fitted_attributes`, ``layer_scales`` and ``kernel_solver_``)::

    phase = NTK_PHASES[ntk_phase_].variant(ntk_solver_, kernel_solver_)
    outputs = phase.predict_outputs(params_star, params, fitted, X)
"""

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._losses import CROSS_ENTROPY, loss_and_score

NTK_MAX_EPOCHS_AUTO = 100
"""Epoch cap of an iterative NTK phase under ``ntk_epochs="auto"``."""

PREDICT_BLOCK = 256
"""Rows per prediction call: one compiled shape, and each sample's outputs do not
depend on how many others are predicted with it."""


class PhaseSettings(NamedTuple):
    """What a phase needs besides the data: ``learning_rate`` (eta; NaN where no fixed
    step is taken), ``n_epochs`` (n, may be ``inf`` for the kernel phase), ``ridge``
    (rho of the kernel phase), ``max_kernel_bytes`` (budget of an N x N kernel),
    ``mesh`` (the devices of data-parallel full-batch steps, ``None`` for one
    device), the matrix-free kernel solver's ``kernel_tol`` and ``kernel_max_iter``,
    ``kernel_offset`` (the function the kernel regression starts from:
    ``"network"``, ``f(theta*)``, or ``"zero"``), ``ntk_ridge`` (the penalty
    ``(ntk_ridge / 2) ||omega - omega*||^2`` of the linearised phase, in the trained
    coordinates), ``layer_scales`` (the per-layer scales ``D`` of the
    parameterisation, :func:`skntk._parameterization.layer_scales`; ``None``:
    standard; or the user's model in their place, :mod:`skntk._network`), ``loss``
    (the estimator's :class:`skntk._losses.Loss`) and
    ``kernel_solver`` (the solver of the kernel phase from :meth:`NTKPhase.resolve`, a
    key of :data:`skntk._kernel_solvers.KERNEL_SOLVERS`; ``None`` for the other
    phases)."""

    learning_rate: float
    n_epochs: float
    ridge: float = 0.0
    max_kernel_bytes: Any = None
    mesh: Any = None
    kernel_tol: float = 1e-5
    kernel_max_iter: int = 500
    kernel_offset: str = "network"
    ntk_ridge: float = 0.0
    layer_scales: Any = None
    loss: Any = CROSS_ENTROPY
    kernel_solver: Any = "dense"


@jax.jit
def tree_is_finite(tree):
    """Whether every leaf is finite: one scalar to the host. ``x * 0`` is 0 for a finite
    ``x`` and NaN for inf or NaN, so one float sum per leaf decides (it cannot overflow,
    and compiles several times faster than boolean reductions)."""
    return jnp.isfinite(sum(jnp.sum(leaf * 0) for leaf in jax.tree.leaves(tree)))


@partial(jax.jit, static_argnums=(0, 1, 5))
def network_metrics(outputs_fn, loss, state, train, val, layer_scales=None):
    """``[train_loss, train_score, val_loss, val_score]`` of a model whose
    ``outputs_fn(state, X, layer_scales)`` is traceable (the network, or a network
    phase's model; ``layer_scales``, static, name the parameterisation and the
    activation, :func:`skntk._parameterization.layer_scales`), in one compiled program
    per model, loss and bucket. ``train`` and ``val`` are :class:`skntk._buckets.Rows`
    (their padding rows weigh zero); ``val`` may be ``None`` (NaN)."""
    values = list(loss_and_score(loss, outputs_fn(state, train.X, layer_scales), train.Y,
                                 train.weights))
    if val is None:
        values += [jnp.nan, jnp.nan]
    else:
        values += list(loss_and_score(loss, outputs_fn(state, val.X, layer_scales), val.Y,
                                      val.weights))
    return jnp.stack(values)


def host_metrics(loss, train_outputs, train, val_outputs=None, val=None):
    """As :func:`network_metrics` for a model whose outputs are computed on the host
    (the kernel phase): ``train_outputs`` (n, C) and ``val_outputs`` (n_val, C) on the
    rows ``train`` and ``val`` (:class:`skntk._buckets.Rows`; ``val`` may be ``None``).
    Returns a list of 4 floats."""
    values = []
    for outputs, rows in ((train_outputs, train), (val_outputs, val)):
        if rows is None:
            values += [math.nan, math.nan]
        else:
            score = loss_and_score(loss, outputs, rows.Y, rows.weights)
            values += [float(v) for v in score]
    return values


class NTKPhase:
    """Base class and interface of an NTK phase (see the module docstring).

    Class attributes
    ----------------
    ntk_solver : str or None
        The solver this implementation is (the fitted ``ntk_solver_``). The kernel
        phase's solver (``kernel_solver_``) is chosen by :meth:`resolve` and reaches it
        through ``PhaseSettings.kernel_solver``.
    padded_rows : bool
        True: :meth:`start` receives the training rows padded to a bucket size with
        their weights (0 for padding), and the validation rows; the phase must give
        padding rows no weight. False: it receives the real rows only (no weights).
    auto_epochs : float
        The epoch budget under ``ntk_epochs="auto"``.
    early_stopping : bool
        Whether ``ntk_epochs="auto"`` stops early (:mod:`skntk._stopping`); False for
        a closed form, whose epochs are its evaluation times.
    lowers_training_loss : bool
        Whether the phase descends the estimator's loss, so that a training loss above
        the switch point's means a too large step (a warning).
    diverging_part : str
        What is reported to have become non-finite when a step is not finite.
    fitted_attributes : tuple of str
        Names of the estimator attributes (trailing underscore) that
        :meth:`fitted_state` returns and :meth:`predict_outputs` reads.
    has_variance : bool
        Whether :meth:`predict_variance` exists (and then :meth:`variance_defined`
        says for which fitted state).
    """

    ntk_solver = None
    padded_rows = True
    auto_epochs = NTK_MAX_EPOCHS_AUTO
    early_stopping = True
    lowers_training_loss = True
    diverging_part = "the parameters"
    fitted_attributes = ()
    has_variance = False

    # ------------------------------------------------------------- before the fit

    @classmethod
    def check_params(cls, ntk_solver, ntk_epochs):
        """Raise a ``ValueError`` for a combination of parameters that this phase does
        not define (called by ``fit`` before any training)."""
        if ntk_epochs != "auto" and math.isinf(ntk_epochs):
            raise ValueError(
                "`ntk_epochs=inf` is only defined for ntk_phase='kernel' (kernel "
                "regression); pass a whole number of epochs.")

    @classmethod
    def resolve(cls, config, layer_sizes, n_train, n_val):
        """``(ntk_solver, kernel_solver)`` of this fit, from the training
        configuration (:class:`skntk._training.TrainingConfig`), the layer sizes and
        the numbers of training and validation rows; may check memory budgets."""
        return cls.ntk_solver, None

    @classmethod
    def variant(cls, ntk_solver, kernel_solver):
        """The implementation (a subclass, or ``cls``) of those solvers."""
        return cls

    @classmethod
    def auto_learning_rate(cls, settings, step_for_curvature):
        """``ntk_learning_rate="auto"``: ``step_for_curvature(c)`` is ``1 / L`` for a
        loss whose Hessian in the outputs is at most ``c`` (``L`` the smoothness
        constant on the monitor subset; :func:`skntk._linearized.auto_ntk_learning_rate`).
        Default: gradient descent on ``settings.loss``."""
        return step_for_curvature(settings.loss.curvature)

    # -------------------------------------------------------------- the phase

    @staticmethod
    def epochs(settings):
        """The epoch numbers (1-based) that get a history row."""
        return range(1, int(settings.n_epochs) + 1)

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        """The state at the switch point ``theta*`` (jax parameters) on the training
        inputs ``X`` (N', d) and encoded targets ``Y`` (N', C); see
        :attr:`padded_rows`. ``val``: :class:`skntk._buckets.Rows` or ``None``."""
        raise NotImplementedError

    @staticmethod
    def step(state, epoch, settings):
        """The state after ``epoch``."""
        raise NotImplementedError

    @classmethod
    def step_and_report(cls, state, epoch, settings, train, val):
        """One epoch and its report: the new state and ``[finite, train_loss,
        train_score, val_loss, val_score]`` (``finite`` 1 or 0; NaN without
        validation data), on the rows of :attr:`padded_rows`."""
        state = cls.step(state, epoch, settings)
        return state, cls.report(state, train, val, settings)

    @classmethod
    def report(cls, state, train, val, settings):
        """The report of :meth:`step_and_report` for ``state``."""
        raise NotImplementedError

    @staticmethod
    def outputs(state, X, layer_scales=None):
        """The phase's model on any inputs: (n, C) outputs (logits of a classifier);
        ``layer_scales``: ``settings.layer_scales``, which name the network's
        activation (for the phases whose state does not hold them)."""
        raise NotImplementedError

    @staticmethod
    def network(state):
        """The parameters reported as ``coefs_``/``intercepts_``: numpy ``(W, b)``."""
        raise NotImplementedError

    @staticmethod
    def iterations(state):
        """Solver iterations behind the epoch's outputs, for ``history_`` (NaN)."""
        return math.nan

    @staticmethod
    def solver_info(state):
        """The solver's record (``kernel_solver_info_``), or ``None``."""
        return None

    # ------------------------------------------------------------ fitted state

    @staticmethod
    def fitted_state(state, settings):
        """The fitted attributes (names of :attr:`fitted_attributes`) that prediction
        needs besides ``theta*``, :meth:`network` and the parameterisation."""
        return {}

    @staticmethod
    def predict_outputs(params_star, params, fitted, X):
        """The fitted model's outputs on ``X`` (jax, float32) from the parameters at the
        switch and the reported ones (jax) and ``fitted``: a dict of
        :attr:`fitted_attributes`, ``layer_scales`` (the parameterisation's ``D``) and
        ``kernel_solver_``."""
        raise NotImplementedError

    @staticmethod
    def variance_defined(fitted):
        """Whether :meth:`predict_variance` is defined for this fitted state."""
        return False
