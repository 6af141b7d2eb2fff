"""Switch statistics against hand computations, and the switch epoch on constructed
parameter trajectories."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk._switch import SWITCH_CRITERIA, SwitchConfig
from skntk.ntk import empirical_ntk_reference


def _params(seed=0):
    return params_to_jax(init_mlp_params((3, 5, 2), np.random.RandomState(seed)))


def _trajectory(n_epochs, seed=0):
    """theta_e = theta_0 + (1 - 2**-e) d: steps that halve every epoch."""
    theta0 = _params(seed)
    direction = _params(seed + 1)
    return [jax.tree_util.tree_map(lambda a, b: a + (1 - 2.0 ** -e) * b, theta0, direction)
            for e in range(n_epochs + 1)], direction


def _run(name, trajectory, config):
    criterion = SWITCH_CRITERIA[name]
    state = criterion.init(trajectory[0], config)
    statistics, switch_epoch = [], None
    for epoch, params in enumerate(trajectory[1:], start=1):
        state, statistic, _, switch = criterion.update(state, epoch, params, config)
        statistics.append(statistic)
        if switch and switch_epoch is None:
            switch_epoch = epoch
    return np.array(statistics), switch_epoch


def _norm(params):
    return math.sqrt(sum(float(jnp.sum(p ** 2)) for p in jax.tree_util.tree_leaves(params)))


def test_param_norm_statistic_and_switch_epoch():
    k, tau = 2, 0.01
    trajectory, direction = _trajectory(12)
    stats, switch_epoch = _run("param_norm", trajectory, SwitchConfig(k, tau, 1))
    # ||theta_e - theta_{e-k}|| = (2**-(e-k) - 2**-e) ||d||
    d = _norm(direction)
    want = np.array([np.nan if e < k else (2.0 ** -(e - k) - 2.0 ** -e) * d for e in range(1, 13)])
    np.testing.assert_allclose(stats, want, rtol=1e-4)  # float32 trajectory
    expected = next(e for e in range(k, 13) if (2.0 ** -(e - k) - 2.0 ** -e) * d < tau)
    assert switch_epoch == expected


def test_ntk_norm_statistic_against_reference_kernels():
    k = 2
    trajectory, _ = _trajectory(6)
    X = jnp.asarray(np.random.RandomState(5).normal(size=(7, 3)).astype(np.float32))
    stats, switch_epoch = _run("ntk_norm", trajectory, SwitchConfig(k, 0.0, 1, X))
    kernels = [np.asarray(empirical_ntk_reference(mlp_forward, p, X), dtype=np.float64)
               for p in trajectory]
    D = [np.linalg.norm(K - kernels[0]) for K in kernels]
    want = [np.nan if e < k else abs(D[e] - D[e - k]) for e in range(1, 7)]
    np.testing.assert_allclose(stats, want, rtol=1e-3, atol=1e-4 * max(D))
    assert switch_epoch is None  # threshold 0 never triggers: a scouting run


@pytest.mark.parametrize("k", [1, 2])
def test_kernel_distance_statistic_against_reference_kernels(k):
    trajectory, _ = _trajectory(5)
    X = jnp.asarray(np.random.RandomState(6).normal(size=(6, 3)).astype(np.float32))
    stats, _ = _run("kernel_distance", trajectory, SwitchConfig(k, 0.0, 1, X))
    kernels = [np.asarray(empirical_ntk_reference(mlp_forward, p, X), dtype=np.float64)
               for p in trajectory]
    want = [np.nan if e < k else 1 - np.sum(kernels[e] * kernels[e - k]) /
            (np.linalg.norm(kernels[e]) * np.linalg.norm(kernels[e - k])) for e in range(1, 6)]
    np.testing.assert_allclose(stats, want, atol=2e-6)
    assert np.all(np.diff(stats[k - 1:]) < 0)  # the kernel settles as the steps shrink


@pytest.mark.parametrize("switch_epoch", [1, 4])
def test_fixed_epoch(switch_epoch):
    trajectory, _ = _trajectory(6)
    stats, got = _run("fixed_epoch", trajectory, SwitchConfig(3, 0.1, switch_epoch))
    assert got == switch_epoch
    assert np.isnan(stats).all()


def test_no_switch_never_triggers():
    trajectory, _ = _trajectory(5)
    _, got = _run(None, trajectory, SwitchConfig(1, 1e9, 1))
    assert got is None
