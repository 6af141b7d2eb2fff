"""The default path: the linearisation-error criterion (and the kernel-velocity one),
the automatic NTK step, the L-BFGS linearised phase and its stopping rule, against
direct computations."""

import math
import warnings

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skntk import HybridNTKClassifier
from skntk._linearized import (auto_ntk_learning_rate, delta_to_params, lbfgs_init,
                               lbfgs_step, linearization, ntk_max_eigenvalue)
from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk._phases import linearized_logits, linearized_step
from skntk._losses import accuracy_standard_error, r2_standard_error
from skntk._stopping import NTKStopping
from skntk._switch import SWITCH_CRITERIA, SwitchConfig
from skntk.ntk import empirical_ntk, empirical_ntk_reference

from .conftest import blobs


def _params(layer_sizes, seed=0):
    return params_to_jax(init_mlp_params(layer_sizes, np.random.RandomState(seed)))


def _cosine_distance(A, B):
    return 1 - np.sum(A * B) / (np.linalg.norm(A) * np.linalg.norm(B))


def _run(name, trajectory, config):
    criterion = SWITCH_CRITERIA[name]
    state = criterion.init(trajectory[0], config)
    rows = []
    for epoch, params in enumerate(trajectory[1:], start=1):
        state, statistic, threshold, switch = criterion.update(state, epoch, params, config)
        rows.append((statistic, threshold, switch))
    return rows


def _trajectory(n_epochs, steps, seed=0):
    """theta_e = theta_0 + c_e d for a fixed direction d and positions c_e."""
    theta0, direction = _params((3, 5, 2), seed), _params((3, 5, 2), seed + 1)
    return [jax.tree_util.tree_map(lambda a, b: a + steps(e) * b, theta0, direction)
            for e in range(n_epochs + 1)]


# --- linearisation error ---------------------------------------------------------------

def _numpy_outputs_and_jvp(params, tangent, X):
    """The ReLU network's outputs at ``params`` and their derivative along ``tangent``,
    forward mode by hand in float64."""
    h, dh = np.asarray(X, np.float64), np.zeros_like(np.asarray(X, np.float64))
    for i, ((W, b), (dW, db)) in enumerate(zip(params, tangent)):
        W, b, dW, db = (np.asarray(a, np.float64) for a in (W, b, dW, db))
        z, dz = h @ W + b, dh @ W + h @ dW + db
        if i == len(params) - 1:
            return z, dz
        h, dh = np.maximum(z, 0), (z > 0) * dz


def _relative_residual(params_a, params_b, X):
    delta = [(np.subtract(Wb, Wa), np.subtract(bb, ba))
             for (Wa, ba), (Wb, bb) in zip(params_a, params_b)]
    outputs_a, predicted = _numpy_outputs_and_jvp(params_a, delta, X)
    outputs_b, _ = _numpy_outputs_and_jvp(params_b, delta, X)
    change = outputs_b - outputs_a
    return np.linalg.norm(change - predicted) / np.linalg.norm(change)


def test_linearization_error_statistic_against_numpy_and_switch_epoch():
    k, tau = 2, 0.3
    # A curved path that settles: c_e = 1 - 2^-e along one direction plus a decaying
    # second one, so that the network leaves its linearisation at theta_0.
    theta0, d1, d2 = (_params((3, 5, 2), seed) for seed in (0, 1, 2))
    trajectory = [jax.tree_util.tree_map(
        lambda a, b, c: a + 3 * (1 - 2.0 ** -e) * b + 2 * np.sin(e / 2) * 2.0 ** -e * c,
        theta0, d1, d2) for e in range(13)]
    X_real = np.random.RandomState(3).normal(size=(7, 3)).astype(np.float32)
    # Two zero padding rows beyond the 7 real ones change nothing.
    X = jnp.asarray(np.vstack([X_real, np.zeros((2, 3), np.float32)]))
    rows = _run("linearization_error", trajectory, SwitchConfig(k, tau, 1, X, 7))
    want, expected_switch = [], None
    for e in range(1, 13):
        if e % k:
            want.append(np.nan)
            continue
        path = _relative_residual(trajectory[0], trajectory[e], X_real)
        ratio = _relative_residual(trajectory[e - k], trajectory[e], X_real) / path
        want.append(ratio if path >= 0.05 else np.inf)
        # Two checks in a row below the threshold.
        if expected_switch is None and want[-1] < tau and e > k and want[-1 - k] < tau:
            expected_switch = e
    stats = np.array([r[0] for r in rows])
    # atol: the float32 round-off of a residual measured relative to the change of the
    # outputs (about 3e-6 at the last check, where the ratio is 6e-4).
    np.testing.assert_allclose(stats, want, rtol=2e-3, atol=1e-5)
    assert stats[k - 1] == pytest.approx(1.0)  # at the first check the windows coincide
    switched = [e for e, r in enumerate(rows, start=1) if r[2]]
    assert expected_switch is not None and switched[0] == expected_switch
    assert all(math.isnan(r[1]) for e, r in enumerate(rows, start=1) if e % k)


def test_linearization_error_needs_the_path_to_have_left_its_linearisation(monkeypatch):
    import skntk._switch as switch_module

    # (window residual, window change, path residual, path change) at each check.
    norms = iter([(1.0, 10.0, 1.0, 10.0), (0.4, 10.0, 4.0, 20.0), (0.2, 10.0, 3.0, 30.0),
                  (0.01, 10.0, 0.04, 1.0), (0.0, 0.0, 1.0, 1.0)])
    monkeypatch.setattr(switch_module, "_linearization_residuals",
                        lambda *args: next(norms))
    trajectory = [_params((3, 5, 2))] * 11
    rows = _run("linearization_error", trajectory,
                SwitchConfig(2, 0.5, 1, jnp.zeros((4, 3), jnp.float32), 4))
    stats = [r[0] for r in rows[1::2]]
    # 0.1 / 0.1; 0.04 / 0.2; 0.02 / 0.1; a path error of 0.04 < 0.05 has not moved;
    # a window without change.
    assert stats[:3] == pytest.approx([1.0, 0.2, 0.2])
    assert math.isinf(stats[3]) and math.isinf(stats[4])
    # It holds at the second check in a row below the threshold, and only there.
    assert [r[2] for r in rows[1::2]] == [False, False, True, False, False]


# --- kernel velocity -------------------------------------------------------------------

def test_kernel_velocity_statistic_against_numpy_and_switch_epoch():
    k, tau = 2, 0.3
    # Moves fast, then settles: c_e = 1 - 2^-e.
    trajectory = _trajectory(12, lambda e: 1 - 2.0 ** -e)
    X = jnp.asarray(np.random.RandomState(3).normal(size=(7, 3)).astype(np.float32))
    rows = _run("kernel_velocity", trajectory, SwitchConfig(k, tau, 1, X, 7))
    kernels = [np.asarray(empirical_ntk_reference(mlp_forward, p, X), np.float64)
               for p in trajectory]
    want, peak, expected_switch = [], 0.0, None
    for e in range(1, 13):
        if e % k:
            want.append(np.nan)
            continue
        v = _cosine_distance(kernels[e], kernels[e - k])
        d = _cosine_distance(kernels[e], kernels[0])
        want.append(v / d)
        if expected_switch is None and v / d < tau and v <= 0.5 * peak:
            expected_switch = e
        peak = max(peak, v)
    stats = np.array([r[0] for r in rows])
    np.testing.assert_allclose(stats, want, rtol=2e-3)
    switched = [e for e, r in enumerate(rows, start=1) if r[2]]
    assert expected_switch is not None and switched[0] == expected_switch
    # Between checks no kernel is computed: no statistic and no threshold.
    assert all(math.isnan(r[1]) for e, r in enumerate(rows, start=1) if e % k)


def _decisions(monkeypatch, velocities, distances, k=3, tau=0.5):
    """The criterion's statistics and switch flags at its checks, with the kernel's
    velocity and distance from initialisation at check ``i`` set to the given values."""
    import skntk._switch as switch_module

    values = iter(zip(velocities, distances))

    def constructed(params, X_monitor, K_last, K0, n_monitor, layer_scales=None):
        v, d = next(values)
        return K0, v, d

    monkeypatch.setattr(switch_module, "_kernel_velocity_and_distance", constructed)
    X = jnp.zeros((4, 3), jnp.float32)
    trajectory = [_params((3, 5, 2))] * (k * len(velocities) + 1)
    rows = _run("kernel_velocity", trajectory, SwitchConfig(k, tau, 1, X, 4))
    checks = rows[k - 1::k]
    return [r[0] for r in checks], [r[2] for r in checks]


def test_kernel_velocity_never_holds_while_the_kernel_moves_steadily(monkeypatch):
    """A kernel that drifts at constant speed has not settled: v_e / d_e falls like
    (k/e)^2, under any threshold eventually, but the velocity never drops below half
    its peak."""
    n = 12
    stats, switches = _decisions(monkeypatch, [1e-3] * n, [1e-3 * i ** 2 for i in range(1, n + 1)])
    np.testing.assert_allclose(stats, [1 / i ** 2 for i in range(1, n + 1)])
    assert stats[-1] < 0.5 and not any(switches)


def test_kernel_velocity_holds_once_the_kernel_has_slowed_and_moved(monkeypatch):
    velocities = [1e-3, 4e-3, 2e-3, 1e-3, 4e-4]
    distances = [1e-3, 5e-3, 8e-3, 9e-3, 9.4e-3]
    stats, switches = _decisions(monkeypatch, velocities, distances, tau=0.15)
    np.testing.assert_allclose(stats, np.divide(velocities, distances))
    # Check 3: v/d = 0.25 (too high); check 4: 0.11 < 0.15 and v = peak / 4.
    assert switches == [False, False, False, True, True]
    # The same trajectory a hundred times smaller has not moved (d < 1e-4): never.
    stats, switches = _decisions(monkeypatch, np.divide(velocities, 100),
                                 np.divide(distances, 100), tau=0.15)
    assert np.isinf(stats).all() and not any(switches)


@pytest.mark.parametrize("switch", ["linearization_error", "kernel_velocity"])
def test_criterion_does_not_switch_with_a_tiny_learning_rate(digits_small, switch):
    X, y = digits_small[0][:300], digits_small[1][:300]
    clf = HybridNTKClassifier(hidden_layer_sizes=(128,), learning_rate=1e-4, max_sgd_epochs=30,
                              switch=switch, ntk_phase=None, validation_fraction=None,
                              random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not hold") as record:
        clf.fit(X, y)
    assert not clf.switch_reached_ and clf.switch_epoch_ == 30
    # The statistic stayed infinite, so raising the threshold would not help.
    assert np.isinf(clf.history_["switch_statistic"][2::3]).all()
    assert "Raise `learning_rate`" in str(record[0].message)
    # Learning normally, the same criterion holds well within the budget.
    clf.set_params(learning_rate=0.05).fit(X, y)
    assert clf.switch_reached_ and clf.switch_epoch_ < 30


def test_param_norm_auto_threshold_follows_the_movement_so_far():
    # Constant steps: an absolute rule on the initial scale would hold at once or never;
    # the relative one holds when the last k epochs moved less than 10% of the total,
    # 2/e of it on a straight path: from e = 21 on.
    trajectory = _trajectory(40, lambda e: 0.05 * e)
    rows = _run("param_norm", trajectory, SwitchConfig(2, None, 1))
    direction = _params((3, 5, 2), 1)
    norm = math.sqrt(sum(float(jnp.sum(p ** 2)) for p in jax.tree_util.tree_leaves(direction)))
    np.testing.assert_allclose([r[1] for r in rows], [0.1 * 0.05 * e * norm for e in range(1, 41)],
                               rtol=1e-4)
    switched = [e for e, r in enumerate(rows, start=1) if r[2]]
    assert switched[0] == 21


def test_ntk_norm_auto_threshold_against_reference_kernels():
    trajectory = _trajectory(12, lambda e: 1 - 2.0 ** -e)
    X = jnp.asarray(np.random.RandomState(5).normal(size=(6, 3)).astype(np.float32))
    k = 2
    rows = _run("ntk_norm", trajectory, SwitchConfig(k, None, 1, X, 6))
    kernels = [np.asarray(empirical_ntk_reference(mlp_forward, p, X), np.float64)
               for p in trajectory]
    D = [np.linalg.norm(K - kernels[0]) for K in kernels]
    np.testing.assert_allclose([r[1] for r in rows], [0.1 * D[e] for e in range(1, 13)],
                               rtol=1e-3)
    expected = next(e for e in range(k, 13) if abs(D[e] - D[e - k]) < 0.1 * D[e])
    assert expected > k  # not at the first possible epoch
    assert [e for e, r in enumerate(rows, start=1) if r[2]][0] == expected


# --- automatic step --------------------------------------------------------------------

def test_ntk_max_eigenvalue_against_the_dense_per_logit_kernel():
    params = _params((4, 16, 16, 3))
    X = np.random.RandomState(0).normal(size=(40, 4)).astype(np.float32)
    Theta = np.asarray(empirical_ntk(params, X, per_logit=True), np.float64)
    dense = Theta.transpose(0, 2, 1, 3).reshape(120, 120)
    want = np.linalg.eigvalsh(dense)[-1]
    assert ntk_max_eigenvalue(params, X) == pytest.approx(want, rel=1e-3)
    assert auto_ntk_learning_rate(params, X) == pytest.approx(2 * 40 / want, rel=1e-3)


def test_estimator_auto_step_within_ten_percent_of_the_dense_step():
    X, y = blobs(n_samples=60, n_features=4, n_classes=3)
    clf = HybridNTKClassifier(hidden_layer_sizes=(16,), max_sgd_epochs=4, switch="fixed_epoch",
                              switch_epoch=4, ntk_phase="frozen_jacobian", ntk_epochs=2,
                              validation_fraction=None, random_state=0).fit(X, y)
    params = list(zip(clf.switch_coefs_, clf.switch_intercepts_))
    X32 = X.astype(np.float32)
    Theta = np.asarray(empirical_ntk_reference(mlp_forward, params_to_jax(params), X32,
                                               per_logit=True), np.float64)
    top = np.linalg.eigvalsh(Theta.transpose(0, 2, 1, 3).reshape(180, 180))[-1]
    assert clf.ntk_learning_rate_ == pytest.approx(2 * 60 / top, rel=0.1)


# --- L-BFGS on the linearised network --------------------------------------------------

def _noisy_problem(seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = (X[:, 0] + 0.8 * rng.normal(size=200) > 0).astype(int)  # overlapping classes
    return jnp.asarray(X), jnp.asarray(np.eye(2, dtype=np.float32)[y])


def test_lbfgs_reaches_the_optimum_of_long_gradient_descent():
    X, Y = _noisy_problem()
    params_star = _params((2, 3, 2))
    lin = linearization(params_star, X)
    weights = jnp.ones(X.shape[0])
    state = lbfgs_init(lin, Y, weights)
    for _ in range(60):
        state = lbfgs_step(state, lin, Y, weights)
    eta = auto_ntk_learning_rate(params_star, X)
    params = params_star
    for _ in range(20000):
        params = linearized_step(params, params_star, X, Y, eta)
    loss = lambda logits: float(jnp.mean(-jnp.sum(Y * jax.nn.log_softmax(logits), axis=1)))  # noqa: E731
    gd_logits = linearized_logits(params_star, params, X)
    lbfgs_logits = linearized_logits(params_star, delta_to_params(lin, state.delta), X)
    assert loss(lbfgs_logits) == pytest.approx(loss(gd_logits), rel=1e-3)
    assert float(state.loss) == pytest.approx(loss(lbfgs_logits), rel=1e-4)
    np.testing.assert_allclose(lbfgs_logits, gd_logits, atol=0.05)


def test_lbfgs_with_ridge_reaches_the_unique_optimum_of_gradient_descent():
    X, Y = _noisy_problem(3)
    params_star = _params((2, 6, 2), 2)
    ridge = 1e-2
    lin = linearization(params_star, X)
    weights = jnp.ones(X.shape[0])
    state = lbfgs_init(lin, Y, weights)
    for _ in range(40):
        state = lbfgs_step(state, lin, Y, weights, ridge)
    eta = 1.0 / (1.0 / auto_ntk_learning_rate(params_star, X) + ridge)
    params = params_star
    for _ in range(5000):
        params = linearized_step(params, params_star, X, Y, eta, None, ridge)
    flat_star, _ = jax.flatten_util.ravel_pytree(params_star)
    flat_gd, _ = jax.flatten_util.ravel_pytree(params)
    np.testing.assert_allclose(state.delta, flat_gd - flat_star, atol=2e-3)
    # The gradient of the regularised objective vanishes at the optimum.
    assert float(jnp.linalg.norm(state.grad)) < 1e-4


def test_lbfgs_loss_never_rises_and_tracks_the_logits():
    X, Y = _noisy_problem(1)
    params_star = _params((2, 8, 2), 3)
    lin = linearization(params_star, X)
    weights = jnp.ones(X.shape[0])
    state = lbfgs_init(lin, Y, weights)
    losses = [float(state.loss)]
    for _ in range(15):
        state = lbfgs_step(state, lin, Y, weights)
        losses.append(float(state.loss))
    assert np.all(np.diff(losses) <= 1e-6)
    np.testing.assert_allclose(
        state.logits, linearized_logits(params_star, delta_to_params(lin, state.delta), X),
        atol=1e-4)


def test_lbfgs_padding_rows_with_zero_weight_change_nothing():
    X, Y = _noisy_problem(2)
    params_star = _params((2, 4, 2), 1)
    padded_X = jnp.concatenate([X, jnp.zeros((7, 2))])
    padded_Y = jnp.concatenate([Y, jnp.zeros((7, 2))])
    weights = jnp.concatenate([jnp.ones(200), jnp.zeros(7)])
    lin, lin_padded = linearization(params_star, X), linearization(params_star, padded_X)
    a = lbfgs_init(lin, Y, jnp.ones(200))
    b = lbfgs_init(lin_padded, padded_Y, weights)
    for _ in range(5):
        a = lbfgs_step(a, lin, Y, jnp.ones(200))
        b = lbfgs_step(b, lin_padded, padded_Y, weights)
    np.testing.assert_allclose(a.delta, b.delta, rtol=1e-4, atol=1e-6)


# --- stopping rule ---------------------------------------------------------------------

def _stop(auto, scores, losses, patience=2, tol=1e-2, max_epochs=50, tolerance=None):
    stopping = NTKStopping(auto, max_epochs, tol, patience, "s0", losses[0], scores[0],
                           tolerance)
    for epoch in range(1, len(losses)):
        if stopping.update(epoch, f"s{epoch}", losses[epoch], scores[epoch]):
            break
    return stopping, epoch


def test_early_stopping_keeps_the_best_validation_state():
    scores = [0.80, 0.82, 0.90, 0.85, 0.88, 0.89, 0.95]
    losses = [1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1]
    stopping, stopped_at = _stop(True, scores, losses, patience=3)
    assert stopping.reason == "validation_score" and stopped_at == 5
    assert stopping.kept("s5") == "s2" and stopping.kept_epoch == 2


def test_early_stopping_keeps_the_latest_state_within_one_standard_error():
    scores = [0.80, 0.82, 0.90, 0.85, 0.88, 0.89, 0.95]
    losses = [1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1]

    def one_standard_error(score):  # of an accuracy on 400 samples
        return accuracy_standard_error(score, 400)

    # sqrt(0.9 * 0.1 / 400) = 0.015: 0.89 (epoch 5) is within it of 0.90, 0.88 is not.
    assert one_standard_error(0.9) == pytest.approx(0.015)
    stopping, stopped_at = _stop(True, scores, losses, patience=3,
                                 tolerance=one_standard_error)
    assert stopping.reason == "validation_score" and stopped_at == 5
    assert stopping.kept("s5") == "s5" and stopping.kept_epoch == 5
    # A later best resets the choice to itself: 0.97 at epoch 3, then 0.90 (outside
    # sqrt(0.97 * 0.03 / 400) = 0.0085) and 0.965 (inside).
    stopping, stopped_at = _stop(True, [0.8, 0.9, 0.89, 0.97, 0.90, 0.965, 0.9, 0.9],
                                 [1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05], patience=4,
                                 tolerance=one_standard_error)
    assert stopping.reason == "validation_score" and stopped_at == 7
    assert stopping.kept_epoch == 5


def test_score_standard_errors_against_hand_computed_values():
    assert accuracy_standard_error(0.75, 300) == pytest.approx(0.025)
    assert accuracy_standard_error(1.0, 50) == 0.0
    # (1 - R^2) sqrt(2 / n): 0.2 * sqrt(2 / 50) = 0.04.
    assert r2_standard_error(0.8, 50) == pytest.approx(0.04)
    assert r2_standard_error(1.2, 50) == 0.0


def test_converged_phase_keeps_its_last_state_and_fixed_epochs_run_out():
    scores = [0.5] + [0.6] * 9
    # Above half the loss at the switch, one slow epoch (a decrease below 1e-2 of it)
    # is not convergence: epochs 1 and 3 are slow alone; once the loss has halved, one
    # slow epoch is (epoch 6).
    losses = [1.0, 0.995, 0.7, 0.698, 0.5, 0.3, 0.299, 0.1]
    stopping, stopped_at = _stop(True, scores[:len(losses)], losses)
    assert stopping.reason == "converged" and stopped_at == 6
    assert stopping.kept("s6") == "s6"
    # Two slow epochs in a row above half the loss are convergence too.
    stopping, stopped_at = _stop(True, scores[:5], [1.0, 0.8, 0.795, 0.792, 0.5])
    assert stopping.reason == "converged" and stopped_at == 3
    stopping, stopped_at = _stop(False, [0.9, 0.1, 0.1, 0.1], [1.0, 2.0, 3.0, 4.0],
                                 max_epochs=3)
    assert stopping.reason == "n_epochs" and stopped_at == 3 and stopping.kept("s3") == "s3"


def test_without_validation_the_lowest_training_loss_is_kept():
    stopping, stopped_at = _stop(True, [np.nan] * 5, [1.0, 0.5, 0.7, 0.8, 0.9], max_epochs=4)
    assert stopping.reason == "max_epochs" and stopping.kept("s4") == "s1"


def test_estimator_ends_with_the_kept_epoch(digits_small):
    X, y = digits_small
    clf = HybridNTKClassifier(hidden_layer_sizes=(32,), max_sgd_epochs=30, random_state=0)
    clf.fit(X, y)
    h = clf.history_
    ntk_rows = np.flatnonzero(h["phase"] == "ntk")
    assert clf.ntk_stop_reason_ in ("validation_score", "converged", "max_epochs")
    assert len(ntk_rows) == clf.n_iter_ - clf.switch_epoch_ > 0
    kept = clf.switch_epoch_ + clf.ntk_best_epoch_ - 1
    # The network in coefs_ is the linearised model's parameters at the kept epoch:
    # its training loss is the one recorded there, never above the switch point's.
    assert h["train_loss"][kept] <= h["train_loss"][clf.switch_epoch_ - 1] + 1e-6


# --- the defaults do not raise the training loss ---------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_default_phase_does_not_raise_the_training_loss(digits_small, seed):
    X, y = digits_small
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*raised the training loss.*")
        clf = HybridNTKClassifier(hidden_layer_sizes=(32,), max_sgd_epochs=30,
                                  random_state=seed).fit(X, y)
    h = clf.history_
    switch_loss = h["train_loss"][clf.switch_epoch_ - 1]
    assert np.all(h["train_loss"][clf.switch_epoch_:] <= switch_loss + 1e-6)
    assert clf.ntk_solver_ == "lbfgs" and math.isnan(clf.ntk_learning_rate_)


def test_scouting_run_gives_no_warning():
    X, y = blobs(n_samples=60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=6, switch_threshold=0,
                                  ntk_phase=None, ntk_monitor_size=16, random_state=0).fit(X, y)
    stats = clf.history_["switch_statistic"]
    assert np.isfinite(stats[2::3]).all() and not clf.switch_reached_


# --- kernel phase from the zero function ----------------------------------------------

def test_kernel_phase_from_zero_is_kernel_regression_with_its_own_kernel():
    X, y = blobs(n_samples=40, n_features=3, n_classes=3)
    X_new = np.random.RandomState(9).normal(size=(5, 3)) * 3
    ridge = 0.1
    clf = HybridNTKClassifier(hidden_layer_sizes=(16,), max_sgd_epochs=3, switch="fixed_epoch",
                              switch_epoch=3, ntk_phase="kernel", kernel_ridge=ridge,
                              validation_fraction=None, random_state=0).fit(X, y)
    with jax.enable_x64(True):
        params = [(jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64))
                  for W, b in zip(clf.switch_coefs_, clf.switch_intercepts_)]
        X64 = jnp.asarray(X.astype(np.float32), jnp.float64)
        new64 = jnp.asarray(X_new.astype(np.float32), jnp.float64)
        K = np.asarray(empirical_ntk_reference(mlp_forward, params, X64)) / 3
        K_new = np.asarray(empirical_ntk_reference(mlp_forward, params, new64, X64)) / 3
    logits = K_new @ np.linalg.solve(K + ridge * np.eye(40), np.eye(3)[y])
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X_new), want, rtol=1e-3, atol=1e-4)
    assert clf.ntk_stop_reason_ == "n_epochs" and math.isnan(clf.ntk_learning_rate_)


def test_lbfgs_epoch_program_compiles_once_per_shape():
    """The state's types do not change from one iteration to the next, so the epoch
    program compiled for the first iteration serves all others."""
    from skntk._linearized import lbfgs_epoch_and_metrics
    from skntk._runtime import count_compilations

    X, Y = _noisy_problem(3)
    lin = linearization(_params((2, 5, 2), 2), X)
    weights = jnp.ones(200)
    state = lbfgs_init(lin, Y, weights)
    state, _ = lbfgs_epoch_and_metrics(state, lin, Y, weights, 1e-3, None, None, None)
    with count_compilations() as compiled:
        for _ in range(3):
            state, report = lbfgs_epoch_and_metrics(state, lin, Y, weights, 1e-3, None, None,
                                                    None)
    assert compiled.count == 0
    assert report.shape == (5,) and report[0] == 1 and np.isnan(report[3])
