"""HybridNTKRegressor against independent computations: the kernel phase at
initialisation against float64 numpy kernel regression, and the fit against the
squared-error reference of each phase."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score

from skntk import HybridNTKRegressor


def relu_ntk_bar(W1, b1, W2, X1, X2):
    """``K / C`` of a one-hidden-layer ReLU network ``f = relu(x W1 + b1) W2 + b2``,
    written out in float64 numpy: summed over the C outputs,
    ``K(x, x') = C (h . h' + 1) + (x . x' + 1) sum_j a_j(x) a_j(x') ||W2[j]||^2``
    with ``h = relu(z)``, ``a = 1[z > 0]`` (the gradients in ``W2, b2`` and in
    ``W1, b1``)."""
    W1, b1, W2 = (np.asarray(a, np.float64) for a in (W1, b1, W2))
    C = W2.shape[1]
    z1, z2 = X1 @ W1 + b1, X2 @ W1 + b1
    h1, h2 = np.maximum(z1, 0), np.maximum(z2, 0)
    a1, a2 = (z1 > 0).astype(float), (z2 > 0).astype(float)
    out_norms = np.sum(W2 ** 2, axis=1)
    K = C * (h1 @ h2.T + 1) + (X1 @ X2.T + 1) * ((a1 * out_norms) @ a2.T)
    return K / C


def network(W1, b1, W2, b2, X):
    W1, b1, W2, b2 = (np.asarray(a, np.float64) for a in (W1, b1, W2, b2))
    return np.maximum(X @ W1 + b1, 0) @ W2 + b2


@pytest.mark.parametrize("n_outputs, normalize_y", [(1, False), (3, False), (3, True)])
def test_kernel_phase_at_initialisation_is_float64_kernel_regression(n_outputs, normalize_y):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 3))
    X_test = rng.normal(size=(11, 3))
    Y = np.column_stack([np.sin(X @ rng.normal(size=3)) * (c + 1) + c
                         for c in range(n_outputs)])
    y = Y[:, 0] if n_outputs == 1 else Y
    X_in, y_in = X.copy(), y.copy()
    reg = HybridNTKRegressor(hidden_layer_sizes=(64,), max_sgd_epochs=0, switch=None,
                             ntk_phase="kernel", ntk_epochs=np.inf, kernel_ridge=0.0,
                             kernel_offset="network", validation_fraction=None,
                             normalize_y=normalize_y, random_state=0).fit(X, y)
    np.testing.assert_array_equal(X, X_in)
    np.testing.assert_array_equal(y, y_in)
    (W1, W2), (b1, b2) = reg.init_coefs_, reg.init_intercepts_
    K = relu_ntk_bar(W1, b1, W2, X, X)
    K_test = relu_ntk_bar(W1, b1, W2, X_test, X)
    F0, F0_test = network(W1, b1, W2, b2, X), network(W1, b1, W2, b2, X_test)
    # normalize_y: the same regression of the standardised targets, mapped back.
    mean, scale = (Y.mean(axis=0), Y.std(axis=0)) if normalize_y else (0.0, 1.0)
    dual = np.linalg.pinv(K, hermitian=True) @ ((Y - mean) / scale - F0)
    want = mean + scale * (F0_test + K_test @ dual)
    got = reg.predict(X_test)
    assert got.shape == (11,) if n_outputs == 1 else (11, n_outputs)
    got = got.reshape(11, n_outputs)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    # The fitted model is the dual form: f(x) = f0(x) + K_bar(x, X_fit_) dual_coef_.
    np.testing.assert_allclose(reg.dual_coef_, dual, rtol=2e-2,
                               atol=2e-2 * np.abs(dual).max())
    assert reg.n_outputs_ == n_outputs and reg.kernel_flow_time_ == np.inf


def test_history_records_the_squared_error_and_r2():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(80, 4))
    Y = np.column_stack([X[:, 0] * X[:, 1], np.cos(X[:, 2])])
    X_val = rng.normal(size=(20, 4))
    Y_val = np.column_stack([X_val[:, 0] * X_val[:, 1], np.cos(X_val[:, 2])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = HybridNTKRegressor(hidden_layer_sizes=(16,), max_sgd_epochs=3, switch=None,
                                 ntk_phase=None, random_state=0).fit(X, Y, X_val, Y_val)
    history = reg.history_
    assert "train_r2" in history and "train_accuracy" not in history
    # The last row is the fitted network: its loss (on the standardised targets) and
    # R^2 recomputed from predict.
    np.testing.assert_allclose(reg.y_mean_, Y.mean(axis=0))
    np.testing.assert_allclose(reg.y_scale_, Y.std(axis=0))
    P, P_val = reg.predict(X), reg.predict(X_val)
    residual = (P - Y) / Y.std(axis=0)
    np.testing.assert_allclose(history["train_loss"][-1],
                               0.5 * np.mean(np.sum(residual ** 2, axis=1)), rtol=1e-4)
    np.testing.assert_allclose(history["val_r2"][-1], r2_score(Y_val, P_val), rtol=1e-4)
    np.testing.assert_allclose(history["train_r2"][-1], reg.score(X, Y), rtol=1e-4)


@pytest.mark.parametrize("ntk_phase", ["frozen_jacobian", "linearized", "kernel"])
def test_every_ntk_phase_lowers_the_training_error_of_the_switch_point(ntk_phase):
    rng = np.random.RandomState(2)
    X = rng.uniform(-2, 2, size=(120, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    reg = HybridNTKRegressor(hidden_layer_sizes=(32,), switch="fixed_epoch", switch_epoch=5,
                             max_sgd_epochs=5, ntk_phase=ntk_phase, kernel_ridge=1e-3,
                             validation_fraction=None, random_state=0).fit(X, y)
    switch = HybridNTKRegressor(hidden_layer_sizes=(32,), switch="fixed_epoch",
                                switch_epoch=5, max_sgd_epochs=5, ntk_phase=None,
                                validation_fraction=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(reg.switch_coefs_[0], switch.coefs_[0])
    assert reg.score(X, y) > switch.score(X, y) + 0.01


def test_invalid_targets_are_refused_with_the_fix():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"`y_val` has 2 output\(s\) but `y` has 1"):
        HybridNTKRegressor().fit(X, np.zeros(10), X, np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"y_val.*NaN"):
        HybridNTKRegressor().fit(X, np.zeros(10), X, np.full(10, np.nan))
    with pytest.raises(ValueError, match="float32 range"):
        HybridNTKRegressor().fit(X, np.full(10, 1e300))


def test_divergence_on_unscaled_targets_names_the_chosen_step_and_normalize_y():
    # Targets around 1e4, left unscaled: the first SGD epoch overflows.
    X = np.random.RandomState(0).normal(size=(200, 5))
    y = 150 * X[:, 0] + 1e4
    regressor = HybridNTKRegressor(normalize_y=False, max_sgd_epochs=5, random_state=0)
    with pytest.raises(ValueError, match=r"Lower `learning_rate` \('auto' chose 0\.05; try "
                                         r"0\.005 or less\).*keep normalize_y=True"):
        regressor.fit(X, y)
    assert not hasattr(regressor, "coefs_")


def test_linearized_lbfgs_reaches_the_ridge_regression_of_the_ntk():
    # One output: the linearised model f0 + J delta minimising
    # (1/2N) ||f0(X) + J delta - y||^2 + (lam/2) ||delta||^2 predicts
    # f0(x) + K(x, X) (K + N lam I)^-1 (y - f0(X)), K = J J^T the NTK at theta_0.
    rng = np.random.RandomState(3)
    X = rng.normal(size=(40, 3))
    X_test = rng.normal(size=(9, 3))
    y = np.sin(X @ np.array([1.0, -0.5, 0.3]))
    lam = 1e-2
    reg = HybridNTKRegressor(hidden_layer_sizes=(32,), max_sgd_epochs=0, switch=None,
                             ntk_phase="linearized", ntk_solver="lbfgs", ntk_ridge=lam,
                             ntk_epochs=150, validation_fraction=None, normalize_y=False,
                             random_state=0).fit(X, y)
    (W1, W2), (b1, b2) = reg.init_coefs_, reg.init_intercepts_
    K = relu_ntk_bar(W1, b1, W2, X, X)
    K_test = relu_ntk_bar(W1, b1, W2, X_test, X)
    F0, F0_test = network(W1, b1, W2, b2, X)[:, 0], network(W1, b1, W2, b2, X_test)[:, 0]
    dual = np.linalg.solve(K + len(X) * lam * np.eye(len(X)), y - F0)
    want = F0_test + K_test @ dual
    np.testing.assert_allclose(reg.predict(X_test), want, rtol=1e-3,
                               atol=1e-3 * np.abs(want).max())
    # The kernel phase with the ridge N lam is the same regression in closed form.
    kernel = HybridNTKRegressor(hidden_layer_sizes=(32,), max_sgd_epochs=0, switch=None,
                                ntk_phase="kernel", kernel_ridge=len(X) * lam,
                                kernel_offset="network", validation_fraction=None,
                                normalize_y=False, random_state=0).fit(X, y)
    np.testing.assert_allclose(kernel.predict(X_test), want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max())
