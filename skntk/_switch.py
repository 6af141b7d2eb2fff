"""Switch criteria: when to leave the SGD phase.

Each criterion is a pair of pure functions gathered in :data:`SWITCH_CRITERIA`,
keyed by the value of the ``switch`` parameter:

- ``init(params0, config) -> state`` at epoch 0 (the initial parameters);
- ``update(state, epoch, params, config) -> (state, statistic, threshold, switch_now)``
  after each SGD epoch (``epoch`` is 1-based). ``statistic`` is a float, NaN while it
  is not yet defined (or, for ``"linearization_error"`` and ``"kernel_velocity"``,
  between their checks);
  ``threshold`` is the threshold it was compared with (NaN where none applies);
- ``monitor_kernels(window) -> (count, description, fix)`` for a criterion that forms
  monitor kernels (``None`` otherwise): how many ``m x m`` kernels its state keeps
  between epochs, in words, and the parameter besides ``ntk_monitor_size`` that lowers
  that count (``""`` if none). The training loop checks their memory before training;
- ``uses_monitor``: whether the statistic is computed on the monitor subset (the
  kernel criteria and ``"linearization_error"``, which forms no kernel).

A new criterion is these functions, in one module, and one entry in
:data:`SWITCH_CRITERIA`.

The statistics are those of the documentation's "Method" page (``docs/method.rst``,
"Switch criteria"); ``k`` is
``config.window`` and ``tau`` is ``config.threshold``. A threshold of 0 never
triggers (every statistic is >= 0), which gives a scouting run that only records the
statistic. ``config.threshold=None`` means ``switch_threshold="auto"``: a fixed
scale-free number for ``"linearization_error"``, ``"kernel_velocity"`` and
``"kernel_distance"``, and for
``"param_norm"`` and ``"ntk_norm"`` a share of how far the parameters or the kernel
have moved from initialisation so far, so that a network that has not started
learning never looks settled.
"""

import math
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._kernel_engine import kernel
from ._model_kernel import jacobian_contraction
from ._network import forward, is_mlp
from ._parameterization import scale_params
from .ntk import frobenius_distance, kernel_distance, ntk_gram


class SwitchConfig(NamedTuple):
    """Settings shared by the criteria.

    Fields
    ------
    window : int
        ``k``, epochs between the two compared states.
    threshold : float or None
        ``tau``; switch when the statistic falls below it. ``None``: the criterion's
        automatic threshold (``switch_threshold="auto"``).
    switch_epoch : int
        Epoch of the ``"fixed_epoch"`` criterion.
    X_monitor : jax array of shape (m', n_features) or None
        Fixed monitor subset for the kernel criteria, padded with zero rows to m' >= m
        rows (a bucket size, :mod:`skntk._buckets`, and a multiple of the number of
        devices, over which its rows are split).
    n_monitor : int or None
        ``m``, the real monitor samples (the first ``m`` rows of ``X_monitor``). The
        monitor kernels are (m', m') with the padding rows and columns set to zero, so
        that every Frobenius norm and inner product equals that of the (m, m) kernel.
    layer_scales : tuple of (float, float) or None
        The per-layer scales ``D`` of the parameterisation
        (:func:`skntk._parameterization.layer_scales`): the monitor kernels are
        ``J D J^T`` and ``"param_norm"`` measures ``||D^{-1/2} (theta_e -
        theta_{e-k})||``, the distance in the trained coordinates. ``None``: standard.
        The user's model in their place (:mod:`skntk._network`): its own forward pass
        and Jacobian-contraction kernels, ``D = I``.
    """

    window: int
    threshold: float
    switch_epoch: int
    X_monitor: Any = None
    n_monitor: Any = None
    layer_scales: Any = None


class SwitchCriterion(NamedTuple):
    """A switch criterion as pure functions (see the module docstring);
    ``uses_monitor``: whether its statistic is computed on the monitor subset
    (``SwitchConfig.X_monitor``)."""

    init: Callable
    update: Callable
    monitor_kernels: Any = None
    uses_monitor: bool = False


def _keeps_initial_kernel(window):
    return 1, "K_0, the monitor kernel at initialisation", ""


def _keeps_initial_and_last_kernel(window):
    return 2, ("K_0 and the monitor kernel of the last check, kept by "
               "switch='kernel_velocity'"), ""


def _keeps_window_kernels(window):
    return (window,
            f"the last {window} monitor kernels, kept by switch='kernel_distance' "
            f"(switch_window={window})",
            f" or `switch_window` (got {window})")


_NAN = float("nan")

AUTO_RELATIVE_SHARE = 0.1
"""``switch_threshold="auto"`` of ``"param_norm"`` and ``"ntk_norm"``: the statistic
(the movement over the last ``k`` epochs) must fall below this share of the movement
from initialisation so far."""

AUTO_KERNEL_DISTANCE = 1e-3
"""``switch_threshold="auto"`` of ``"kernel_distance"``."""

AUTO_KERNEL_VELOCITY = 0.01
"""``switch_threshold="auto"`` of ``"kernel_velocity"`` (see benchmarks/bench_hybrid.py
and the user guide, "When does the hybrid pay off")."""

KERNEL_VELOCITY_SLOWDOWN = 0.5
"""``"kernel_velocity"`` also needs the kernel to move at most this share of its
fastest movement seen so far (over a window of ``k`` epochs)."""


def _threshold(config, auto):
    return auto if config.threshold is None else config.threshold


def _below(statistic, threshold):
    return not math.isnan(statistic) and statistic < threshold


# --- fixed epoch -----------------------------------------------------------------

def _fixed_init(params0, config):
    return ()


def _fixed_update(state, epoch, params, config):
    return state, _NAN, _NAN, epoch >= config.switch_epoch


# --- no switch -------------------------------------------------------------------

def _never_update(state, epoch, params, config):
    return state, _NAN, _NAN, False


# --- parameter norm ----------------------------------------------------------------

@partial(jax.jit, static_argnames="layer_scales")
def _param_distance(params_a, params_b, layer_scales=None):
    """``||D^{-1/2} (theta_a - theta_b)||_2``: the distance in the trained coordinates."""
    difference = jax.tree_util.tree_map(jnp.subtract, params_a, params_b)
    leaves = jax.tree_util.tree_leaves(scale_params(difference, layer_scales, -0.5))
    return jnp.sqrt(sum(jnp.sum(d ** 2) for d in leaves))


class ParamNormState(NamedTuple):
    """``params0``: theta_0; ``past``: the last ``k + 1`` parameter lists."""

    params0: Any
    past: tuple


def _param_norm_init(params0, config):
    return ParamNormState(params0, (params0,))


def _param_norm_update(state, epoch, params, config):
    """``||theta_e - theta_{e-k}||_2`` over all weights and biases (in the trained
    coordinates); defined for e >= k. Automatic threshold:
    ``0.1 * ||theta_e - theta_0||_2``."""
    scales = config.layer_scales
    past = (state.past + (params,))[-(config.window + 1):]
    statistic = (float(_param_distance(params, past[0], scales)) if epoch >= config.window
                 else _NAN)
    threshold = config.threshold
    if threshold is None:
        threshold = AUTO_RELATIVE_SHARE * float(_param_distance(params, state.params0, scales))
    return state._replace(past=past), statistic, threshold, _below(statistic, threshold)


# --- NTK norm ----------------------------------------------------------------------

class NTKNormState(NamedTuple):
    """``K0``: (m, m) kernel at initialisation; ``distances``: the last ``k + 1`` values of
    ``D_e = ||K_e - K_0||_F`` (floats, ``D_0 = 0``)."""

    K0: Any
    distances: tuple


def _gram(params, X, layer_scales):
    """The traced NTK of ``X`` with itself (``J D J^T`` with ``layer_scales``; a model
    in their place, :mod:`skntk._network`, by its Jacobian contraction)."""
    if layer_scales is None:
        return ntk_gram(params, X)
    if is_mlp(layer_scales):
        return kernel(params, X, None, False, layer_scales)
    return jacobian_contraction(layer_scales, params, X, None, False)


def _monitor_kernel(params, X_monitor, n_monitor, layer_scales=None):
    # Rows past n_monitor pad the subset (to a bucket, and for a multi-device split);
    # they are zeroed rather than cut off, so that n_monitor is traced and every subset
    # size of one bucket shares the compiled kernel.
    if n_monitor is None:
        return _gram(params, X_monitor, layer_scales)
    real = jnp.arange(X_monitor.shape[0]) < n_monitor
    return jnp.where(real[:, None] & real[None, :], _gram(params, X_monitor, layer_scales),
                     0.0)


_monitor_kernel_jit = jax.jit(_monitor_kernel, static_argnames="layer_scales")


def _initial_kernel(params0, config):
    return _monitor_kernel_jit(params0, config.X_monitor, config.n_monitor,
                               layer_scales=config.layer_scales)


def _ntk_norm_init(params0, config):
    return NTKNormState(_initial_kernel(params0, config), (0.0,))


@partial(jax.jit, static_argnames="layer_scales")
def _distance_from_initial_kernel(params, X_monitor, K0, n_monitor, layer_scales=None):
    return frobenius_distance(_monitor_kernel(params, X_monitor, n_monitor, layer_scales), K0)


@partial(jax.jit, static_argnames="layer_scales")
def _kernel_and_distance(params, X_monitor, K_past, n_monitor, layer_scales=None):
    K = _monitor_kernel(params, X_monitor, n_monitor, layer_scales)
    return K, kernel_distance(K, K_past)


def _ntk_norm_update(state, epoch, params, config):
    """``|D_e - D_{e-k}|`` with ``D_e = ||K_e - K_0||_F``; defined for e >= k.
    Automatic threshold: ``0.1 * D_e``."""
    D = float(_distance_from_initial_kernel(params, config.X_monitor, state.K0,
                                            config.n_monitor, config.layer_scales))
    distances = (state.distances + (D,))[-(config.window + 1):]
    statistic = abs(D - distances[0]) if epoch >= config.window else _NAN
    threshold = _threshold(config, AUTO_RELATIVE_SHARE * D)
    return (state._replace(distances=distances), statistic, threshold,
            _below(statistic, threshold))


# --- kernel distance (Fort et al. 2020) ------------------------------------------

def _kernel_distance_init(params0, config):
    return (_initial_kernel(params0, config),)


def _kernel_distance_update(kernels, epoch, params, config):
    """``1 - <K_e, K_{e-k}>_F / (||K_e||_F ||K_{e-k}||_F)``; defined for e >= k."""
    # ``kernels`` holds the last k kernels, so kernels[0] is K_{e-k} once e >= k (before
    # that it is K_0 and the distance goes unused).
    K, distance = _kernel_and_distance(params, config.X_monitor, kernels[0], config.n_monitor,
                                       config.layer_scales)
    kernels = (kernels + (K,))[-config.window:]
    statistic = float(distance) if epoch >= config.window else _NAN
    threshold = _threshold(config, AUTO_KERNEL_DISTANCE)
    return kernels, statistic, threshold, _below(statistic, threshold)


# --- kernel velocity: how much the kernel still moves, relative to how far it has moved

class KernelVelocityState(NamedTuple):
    """``K0``: (m, m) monitor kernel at initialisation; ``K_last``: the monitor kernel
    at the last check (``k`` epochs earlier); ``peak_velocity``: the largest velocity
    seen at the earlier checks (0 before the first)."""

    K0: Any
    K_last: Any
    peak_velocity: float


def _kernel_velocity_init(params0, config):
    K0 = _initial_kernel(params0, config)
    return KernelVelocityState(K0, K0, 0.0)


def _cosine_distance(A, B):
    """``1 - cos(A, B)`` as ``||A/||A|| - B/||B||||^2 / 2``: the same number, without the
    cancellation of ``1 - <A, B>/(||A|| ||B||)``, so that it resolves the small
    distances of a settling kernel in float32."""
    difference = A / jnp.linalg.norm(A) - B / jnp.linalg.norm(B)
    return 0.5 * jnp.sum(difference * difference)


@partial(jax.jit, static_argnames="layer_scales")
def _kernel_velocity_and_distance(params, X_monitor, K_last, K0, n_monitor, layer_scales=None):
    K = _monitor_kernel(params, X_monitor, n_monitor, layer_scales)
    return K, _cosine_distance(K, K_last), _cosine_distance(K, K0)


UNMOVED_DISTANCE = 1e-4
"""A cosine distance from initialisation below this (an angle of about 0.014 rad)
counts as "the kernel has not moved". Measured on 300 digits with one hidden layer of
128: 1e-5 after 30 epochs at learning rate 1e-4, where single ReLU units switching
on or off make the velocity erratic; 4e-3 to 1.5e-2 from epoch 6 to 30 at 0.05."""


def relative_kernel_velocity(velocity, distance_from_init):
    """``v_e / d_e``; ``inf`` while the kernel has not moved from initialisation
    (``d_e < UNMOVED_DISTANCE``, 1e-4)."""
    if not distance_from_init >= UNMOVED_DISTANCE:
        return math.inf
    return velocity / distance_from_init


def _kernel_velocity_update(state, epoch, params, config):
    """``v_e / d_e`` every ``k`` epochs, with ``v_e = 1 - cos(K_e, K_{e-k})`` and
    ``d_e = 1 - cos(K_e, K_0)``; NaN at the other epochs (no kernel is computed). It
    holds when ``v_e / d_e < tau`` and ``v_e`` is at most half the largest earlier
    ``v``: the kernel has moved, passed its fastest change, and now moves little
    compared with how far it has come."""
    if epoch % config.window:
        return state, _NAN, _NAN, False
    K, velocity, distance = _kernel_velocity_and_distance(
        params, config.X_monitor, state.K_last, state.K0, config.n_monitor,
        layer_scales=config.layer_scales)
    velocity, distance = float(velocity), float(distance)
    statistic = relative_kernel_velocity(velocity, distance)
    threshold = _threshold(config, AUTO_KERNEL_VELOCITY)
    slowed = velocity <= KERNEL_VELOCITY_SLOWDOWN * state.peak_velocity
    switch = slowed and _below(statistic, threshold)
    state = KernelVelocityState(state.K0, K, max(state.peak_velocity, velocity))
    return state, statistic, threshold, switch


# --- linearisation error: how much of the last window the linearised network explains

class LinearizationState(NamedTuple):
    """``params0``: theta_0; ``params_last``: the parameters at the last check
    (``k`` epochs earlier; theta_0 before the first); ``checks_below``: how many checks
    in a row, up to the last, had the statistic below the threshold."""

    params0: Any
    params_last: Any
    checks_below: int = 0


def _linearization_init(params0, config):
    return LinearizationState(params0, params0)


def _masked_norm(A, real):
    return jnp.sqrt(jnp.sum(jnp.where(real[:, None], A * A, 0.0)))


def _taylor_residual(forward, params_a, params_b, outputs_b, real):
    """``(||F(b) - F(a) - J(a)(b - a)||_F, ||F(b) - F(a)||_F)`` over the real rows."""
    delta = jax.tree_util.tree_map(jnp.subtract, params_b, params_a)
    outputs_a, predicted_change = jax.jvp(forward, (params_a,), (delta,))
    change = outputs_b - outputs_a
    return _masked_norm(change - predicted_change, real), _masked_norm(change, real)


@partial(jax.jit, static_argnames="network")
def _linearization_residuals(params, params_last, params0, X_monitor, n_monitor,
                             network=None):
    """The Taylor residuals of the last window and of the whole path from theta_0
    (four norms, see :func:`relative_linearization_error`); ``network``: the MLP's layer
    scales or a model (static, :mod:`skntk._network`)."""
    def outputs(p):
        return forward(network, p, X_monitor)

    real = jnp.arange(X_monitor.shape[0]) < n_monitor
    current = outputs(params)
    # One array, so that the host reads the four norms in one transfer.
    return jnp.stack(_taylor_residual(outputs, params_last, params, current, real)
                     + _taylor_residual(outputs, params0, params, current, real))


UNMOVED_LINEARIZATION_ERROR = 0.05
"""A linearisation error of the whole path from initialisation, ``eps(0, e)``, below
this counts as "the network has not left its linearisation at theta_0": the statistic
is then ``inf``. Measured at the first check (epoch 3) with the default settings:
0.08 to 0.70 on the four main tasks of ``benchmarks/bench_hybrid.py``; 0.009 after 30
epochs at learning rate 1e-4 on 300 digits with one hidden layer of 128 units."""

AUTO_LINEARIZATION_ERROR = 0.15
"""``switch_threshold="auto"`` of ``"linearization_error"`` (see
benchmarks/bench_hybrid.py and the user guide, "When does the hybrid pay off")."""

LINEARIZATION_CHECKS_BELOW = 2
"""``"linearization_error"`` holds at the second check in a row whose statistic is
below the threshold: one check can fall below it by SGD's noise (the statistic of one
run varies by about 0.02 from check to check once training has turned lazy)."""


def relative_linearization_error(window_residual, window_change, path_residual, path_change):
    """``eps(e-k, e) / eps(0, e)`` from the four norms, with ``eps(a, b) =
    residual / change``; ``inf`` while the path from initialisation is explained by the
    linearisation at theta_0 to within ``UNMOVED_LINEARIZATION_ERROR`` (or the function has
    not changed)."""
    if not (window_change > 0 and path_change > 0):
        return math.inf
    path_error = path_residual / path_change
    if not path_error >= UNMOVED_LINEARIZATION_ERROR:
        return math.inf
    return (window_residual / window_change) / path_error


def _linearization_update(state, epoch, params, config):
    """``eps(e-k, e) / eps(0, e)`` every ``k`` epochs (NaN at the other epochs), with
    ``eps(a, b) = ||F_b - F_a - J_a (theta_b - theta_a)||_F / ||F_b - F_a||_F`` the
    relative error of the first-order Taylor expansion at ``theta_a`` in predicting the
    change of the network's outputs ``F`` on the monitor subset from epoch ``a`` to
    ``b``. It holds when the statistic is below ``tau`` at two checks in a row: the
    linearised network explains the last ``k`` epochs of SGD far better than it explains
    the path from initialisation."""
    if epoch % config.window:
        return state, _NAN, _NAN, False
    norms = _linearization_residuals(params, state.params_last, state.params0,
                                     config.X_monitor, config.n_monitor,
                                     config.layer_scales)
    statistic = relative_linearization_error(*np.asarray(norms, dtype=float).tolist())
    threshold = _threshold(config, AUTO_LINEARIZATION_ERROR)
    checks_below = state.checks_below + 1 if _below(statistic, threshold) else 0
    state = LinearizationState(state.params0, params, checks_below)
    return state, statistic, threshold, checks_below >= LINEARIZATION_CHECKS_BELOW


SWITCH_CRITERIA = {
    "linearization_error": SwitchCriterion(_linearization_init, _linearization_update,
                                           uses_monitor=True),
    "kernel_velocity": SwitchCriterion(_kernel_velocity_init, _kernel_velocity_update,
                                       _keeps_initial_and_last_kernel, True),
    "fixed_epoch": SwitchCriterion(_fixed_init, _fixed_update),
    "param_norm": SwitchCriterion(_param_norm_init, _param_norm_update),
    "ntk_norm": SwitchCriterion(_ntk_norm_init, _ntk_norm_update, _keeps_initial_kernel, True),
    "kernel_distance": SwitchCriterion(_kernel_distance_init, _kernel_distance_update,
                                       _keeps_window_kernels, True),
    None: SwitchCriterion(_fixed_init, _never_update),
}
"""The registry of switch criteria, keyed by the value of ``switch``."""
