"""Switch criteria: when to leave the SGD phase.

Each criterion is a pair of pure functions gathered in :data:`SWITCH_CRITERIA`,
keyed by the value of the ``switch`` parameter:

- ``init(params0, config) -> state`` at epoch 0 (the initial parameters);
- ``update(state, epoch, params, config) -> (state, statistic, switch_now)`` after
  each SGD epoch (``epoch`` is 1-based). ``statistic`` is a float, NaN while it is
  not yet defined.

The statistics follow ``DESIGN.md``; ``k`` is ``config.window`` and ``tau`` is
``config.threshold``. A threshold of 0 never triggers (every statistic is >= 0),
which gives a scouting run that only records the statistic.
"""

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .ntk import frobenius_distance, kernel_distance, ntk_gram


class SwitchConfig(NamedTuple):
    """Settings shared by the criteria.

    Fields
    ------
    window : int
        ``k``, epochs between the two compared states.
    threshold : float
        ``tau``; switch when the statistic falls below it.
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
    """

    window: int
    threshold: float
    switch_epoch: int
    X_monitor: Any = None
    n_monitor: Any = None


class SwitchCriterion(NamedTuple):
    """A switch criterion as pure functions (see the module docstring);
    ``auto_threshold(state) -> float`` gives ``switch_threshold="auto"`` from the
    state at initialisation."""

    init: Callable
    update: Callable
    auto_threshold: Callable


_NAN = float("nan")


def _below(statistic, config):
    return not math.isnan(statistic) and statistic < config.threshold


# --- fixed epoch -----------------------------------------------------------------

def _fixed_init(params0, config):
    return ()


def _fixed_update(state, epoch, params, config):
    return state, _NAN, epoch >= config.switch_epoch


# --- no switch -------------------------------------------------------------------

def _never_update(state, epoch, params, config):
    return state, _NAN, False


# --- parameter norm (seed) -------------------------------------------------------

@jax.jit
def _param_distance(params_a, params_b):
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(jnp.subtract, params_a, params_b))
    return jnp.sqrt(sum(jnp.sum(d ** 2) for d in leaves))


def _param_norm_init(params0, config):
    return (params0,)


def _param_norm_update(past, epoch, params, config):
    """``||theta_e - theta_{e-k}||_2`` over all weights and biases; defined for e >= k."""
    past = (past + (params,))[-(config.window + 1):]
    statistic = float(_param_distance(params, past[0])) if epoch >= config.window else _NAN
    return past, statistic, _below(statistic, config)


# --- NTK norm (seed) -------------------------------------------------------------

class NTKNormState(NamedTuple):
    """``K0``: (m, m) kernel at initialisation; ``distances``: the last ``k + 1`` values of
    ``D_e = ||K_e - K_0||_F`` (floats, ``D_0 = 0``)."""

    K0: Any
    distances: tuple


def _monitor_kernel(params, X_monitor, n_monitor):
    # Rows past n_monitor pad the subset (to a bucket, and for a multi-device split);
    # they are zeroed rather than cut off, so that n_monitor is traced and every subset
    # size of one bucket shares the compiled kernel.
    if n_monitor is None:
        return ntk_gram(params, X_monitor)
    real = jnp.arange(X_monitor.shape[0]) < n_monitor
    return jnp.where(real[:, None] & real[None, :], ntk_gram(params, X_monitor), 0.0)


_monitor_kernel_jit = jax.jit(_monitor_kernel)


def _ntk_norm_init(params0, config):
    return NTKNormState(_monitor_kernel_jit(params0, config.X_monitor, config.n_monitor), (0.0,))


@jax.jit
def _distance_from_initial_kernel(params, X_monitor, K0, n_monitor):
    return frobenius_distance(_monitor_kernel(params, X_monitor, n_monitor), K0)


@jax.jit
def _kernel_and_distance(params, X_monitor, K_past, n_monitor):
    K = _monitor_kernel(params, X_monitor, n_monitor)
    return K, kernel_distance(K, K_past)


def _ntk_norm_update(state, epoch, params, config):
    """``|D_e - D_{e-k}|`` with ``D_e = ||K_e - K_0||_F``; defined for e >= k."""
    D = float(_distance_from_initial_kernel(params, config.X_monitor, state.K0,
                                            config.n_monitor))
    distances = (state.distances + (D,))[-(config.window + 1):]
    statistic = abs(D - distances[0]) if epoch >= config.window else _NAN
    return state._replace(distances=distances), statistic, _below(statistic, config)


# --- kernel distance (Fort et al. 2020) ------------------------------------------

def _kernel_distance_init(params0, config):
    return (_monitor_kernel_jit(params0, config.X_monitor, config.n_monitor),)


def _kernel_distance_update(kernels, epoch, params, config):
    """``1 - <K_e, K_{e-k}>_F / (||K_e||_F ||K_{e-k}||_F)``; defined for e >= k."""
    # ``kernels`` holds the last k kernels, so kernels[0] is K_{e-k} once e >= k (before
    # that it is K_0 and the distance goes unused).
    K, distance = _kernel_and_distance(params, config.X_monitor, kernels[0], config.n_monitor)
    kernels = (kernels + (K,))[-config.window:]
    statistic = float(distance) if epoch >= config.window else _NAN
    return kernels, statistic, _below(statistic, config)


# ``switch_threshold="auto"``: a share of the scale of the initial state, so that one
# default serves data of any scale.
AUTO_PARAM_NORM_SHARE = 0.01
AUTO_NTK_NORM_SHARE = 0.25
AUTO_KERNEL_DISTANCE = 1e-3


def _no_threshold(state):
    return _NAN


def _param_norm_auto(past):
    """``0.01 * ||theta_0||_2``."""
    zero = jax.tree_util.tree_map(jnp.zeros_like, past[0])
    return AUTO_PARAM_NORM_SHARE * float(_param_distance(past[0], zero))


def _ntk_norm_auto(state):
    """``0.25 * ||K_0||_F``."""
    return AUTO_NTK_NORM_SHARE * float(jnp.linalg.norm(state.K0))


def _kernel_distance_auto(kernels):
    return AUTO_KERNEL_DISTANCE


SWITCH_CRITERIA = {
    "fixed_epoch": SwitchCriterion(_fixed_init, _fixed_update, _no_threshold),
    "param_norm": SwitchCriterion(_param_norm_init, _param_norm_update, _param_norm_auto),
    "ntk_norm": SwitchCriterion(_ntk_norm_init, _ntk_norm_update, _ntk_norm_auto),
    "kernel_distance": SwitchCriterion(_kernel_distance_init, _kernel_distance_update,
                                       _kernel_distance_auto),
    None: SwitchCriterion(_fixed_init, _never_update, _no_threshold),
}

KERNEL_CRITERIA = ("ntk_norm", "kernel_distance")
