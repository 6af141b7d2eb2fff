"""The kernel phase predicts what its fit recorded, at the precision its kernel has.

The training kernel is computed in float32: eigenvalues below ``N · eps32 · λ_max`` are
round-off, and coefficients built on them are large and of both signs, so that a
prediction ``offset(x) + K_bar(x, X_fit_) dual_coef_`` summed in float32 cancels to
noise while the fit's record (float64, from the eigendecomposition) looks right.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification

from skntk import HybridNTKClassifier, HybridNTKRegressor
from skntk._kernel_flow import eigendecompose_kernel, flow_filter, resolution_rtol
from skntk._matrix_free import _tridiagonal_function, cross_kernel_apply
from skntk._mlp import mlp_forward, params_to_jax
from skntk.ntk import empirical_ntk


def _three_classes():
    """The 300-row recipe: 10 features, 3 classes, a narrow network."""
    X, y = make_classification(300, 10, n_informative=5, n_classes=3, random_state=0)
    return X, y, (16,)


def _binary_table():
    """1500 rows of 8 binary features (256 distinct rows: many duplicates, some with
    different labels)."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (1500, 8)).astype(float)
    y = ((X[:, 0] + X[:, 1] + X[:, 2] * X[:, 3] + (rng.random(1500) < 0.1)) % 2).astype(int)
    return X, y, (32,)


def _float64_formula(est, X):
    """``offset(x) + K(x, X_fit_) / C @ dual_coef_`` with the float32 kernel of
    :func:`skntk.ntk.empirical_ntk`, summed in float64."""
    params = params_to_jax(list(zip(est.switch_coefs_, est.switch_intercepts_)))
    X = np.asarray(X, dtype=np.float32)
    K = np.asarray(empirical_ntk(params, X, est.X_fit_,
                                 parameterization=est.parameterization_), dtype=np.float64)
    offset = np.asarray(mlp_forward(params, X), dtype=np.float64)
    if est.kernel_offset_ == "zero":
        offset[:] = 0.0
    return offset + K / est.dual_coef_.shape[1] @ est.dual_coef_


@pytest.mark.parametrize("data", [_three_classes, _binary_table])
@pytest.mark.parametrize("solver", ["dense", "matrix_free"])
@pytest.mark.parametrize("Estimator", [HybridNTKClassifier, HybridNTKRegressor])
def test_kernel_phase_predicts_what_the_fit_recorded(data, solver, Estimator):
    X, y, hidden = data()
    regressor = Estimator is HybridNTKRegressor
    if regressor:
        y = y + 0.1 * X[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # switch not reached, unresolved residual
        est = Estimator(hidden_layer_sizes=hidden, max_sgd_epochs=8, random_state=0,
                        ntk_phase="kernel", validation_fraction=None, kernel_ridge=0.0,
                        kernel_solver=solver).fit(X, y)
    recorded = est.history_["train_r2" if regressor else "train_accuracy"][-1]
    assert est.score(X, y) == pytest.approx(recorded, abs=1e-5)
    outputs = est._outputs(X)
    reference = _float64_formula(est, X)
    assert np.max(np.abs(outputs - reference)) <= 1e-4 * np.max(np.abs(reference))


def test_dense_and_matrix_free_predict_the_same_classes():
    X, y, hidden = _three_classes()
    predictions = []
    for solver in ("dense", "matrix_free"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = HybridNTKClassifier(hidden_layer_sizes=hidden, max_sgd_epochs=8,
                                      random_state=0, ntk_phase="kernel",
                                      validation_fraction=None,
                                      kernel_solver=solver).fit(X, y)
        predictions.append(clf.predict(X))
    # The two differ only along directions at the kernel's resolution (a cut-off
    # against a ridge of that size).
    assert np.mean(predictions[0] == predictions[1]) >= 0.97


def test_eigenvalue_cut_off_follows_the_precision_the_kernel_was_computed_in():
    rng = np.random.default_rng(0)
    n = 50
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    lam = np.geomspace(1.0, 1e-12, n)
    K = (V * lam) @ V.T
    # float64 storage of a kernel computed in float32: only eigenvalues above
    # n * eps32 (6e-6) are resolved.
    kept = eigendecompose_kernel(K, precision=np.float32)[0] > 0
    assert kept.sum() == np.sum(lam > resolution_rtol(n, np.float32) * lam[0])
    assert resolution_rtol(n, np.float32) == n * np.finfo(np.float32).eps
    kept64 = eigendecompose_kernel(K)[0] > 0
    assert kept64.sum() > kept.sum()
    assert np.array_equal(eigendecompose_kernel(K.astype(np.float32))[0] > 0, kept)


def test_lanczos_and_dense_share_one_flow_filter_with_zero_on_null_directions():
    # A diagonal tridiagonal matrix: its Ritz values are its diagonal, one of them 0.
    alpha, beta = np.array([2.0, 0.0, 0.5]), np.zeros(2)
    for t in (0.5, 7.0, np.inf):
        y, _ = _tridiagonal_function(alpha, beta, t, 4)
        np.testing.assert_allclose(y, flow_filter(alpha, t, 4) * [1.0, 0.0, 0.0])
        g = flow_filter(np.array([0.0, 1.0]), t, 4)
        assert g[0] == 0.0
    # A Ritz value below the resolution is a null direction too.
    y, _ = _tridiagonal_function(np.array([1.0, 1e-9]), np.zeros(1), np.inf, 4, rtol=1e-6)
    np.testing.assert_array_equal(y, [1.0, 0.0])


def test_cross_kernel_apply_sums_large_opposite_coefficients_in_float64():
    rng = np.random.default_rng(1)
    d, N, C = 3, 40, 2
    params = params_to_jax([(rng.normal(size=(d, 8)) / np.sqrt(d), np.zeros(8)),
                            (rng.normal(size=(8, C)) / np.sqrt(8), np.zeros(C))])
    X = rng.normal(size=(N, d)).astype(np.float32)
    X_new = rng.normal(size=(5, d)).astype(np.float32)
    small = rng.normal(size=(N, C))
    # Coefficients 1e6 times larger along a direction the cross kernel almost
    # annihilates: their products cancel to a result of order one.
    pair = np.zeros((N, C))
    pair[0], pair[1] = 1e6, -1e6
    X[1] = X[0]
    A = small + pair
    K = np.asarray(empirical_ntk(params, X_new, X), dtype=np.float64) / C
    expected = K @ small  # the pair cancels exactly: two identical training rows
    got = cross_kernel_apply(params, X_new, X, A, C)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_unresolved_residual_warns():
    # All rows identical, targets of three classes: only the constant direction of the
    # kernel is resolved, and most of the residual (2/3 of it) is not along it.
    X = np.ones((42, 3))
    y = np.arange(42) % 3
    with pytest.warns(UserWarning, match="below its float32 resolution"):
        HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=2, random_state=0,
                            ntk_phase="kernel", validation_fraction=None,
                            kernel_solver="dense").fit(X, y)
