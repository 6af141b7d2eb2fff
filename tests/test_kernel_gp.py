"""The kernel phase's public solution (``dual_coef_``, ``X_fit_``) and the NTK-GP
posterior variance (``predict_variance``), against independent float64 numpy
computations on small problems.

The reference kernel is :func:`skntk.ntk.empirical_ntk_reference` (explicit per-sample
Jacobians) in float64 on the fitted ``theta*`` and ``X_fit_``; the GP formula is then
evaluated with numpy. Networks are tiny (one hidden layer of 32) and there are 30
training samples, so that the kernel has full rank and every test is fast.
"""

import pickle
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import skntk._kernel_solvers
from skntk import HybridNTKClassifier
from skntk._matrix_free import kernel_diagonal
from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk.ntk import empirical_ntk, empirical_ntk_reference

from .conftest import blobs

X30, y30 = blobs(n_samples=30, n_features=4, n_classes=3)
RNG = np.random.RandomState(1)
# Near the data and far from it, none of them a training input.
X_TEST = np.vstack([X30[:8] + 0.5 * RNG.normal(size=(8, 4)),
                    X30[8:16] + 3.0 * RNG.normal(size=(8, 4))])
KERNEL = dict(hidden_layer_sizes=(32,), max_sgd_epochs=3, switch="fixed_epoch", switch_epoch=2,
              ntk_phase="kernel", validation_fraction=None, random_state=0)


def kernel_fit(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # CG at rho = 0 may stop short
        return HybridNTKClassifier(**{**KERNEL, **params}).fit(X30, y30)


@pytest.fixture(scope="module")
def fits():
    """Fitted kernel phases by (solver, ridge), shared by the tests of this module."""
    return {(solver, ridge): kernel_fit(kernel_solver=solver, kernel_ridge=ridge)
            for solver in ("dense", "matrix_free") for ridge in (0.0, 0.5)}


def float64_gp(clf, X):
    """``(var, prior, K_bar, K_cross)`` of the NTK-GP in float64 numpy: ``K_bar`` by
    explicit Jacobians at ``theta*`` on ``X_fit_``, ``rho = kernel_ridge`` at fit time
    (the same in these tests), ``(K_bar + rho I)^+`` by a pseudo-inverse."""
    C = len(clf.classes_)
    with jax.enable_x64(True):
        params = [(jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64))
                  for W, b in zip(clf.switch_coefs_, clf.switch_intercepts_)]
        X_fit = jnp.asarray(clf.X_fit_, jnp.float64)
        Xq = jnp.asarray(np.asarray(X, np.float32), jnp.float64)
        K = np.asarray(empirical_ntk_reference(mlp_forward, params, X_fit)) / C
        K_cross = np.asarray(empirical_ntk_reference(mlp_forward, params, Xq, X_fit)) / C
        prior = np.diag(np.asarray(empirical_ntk_reference(mlp_forward, params, Xq))) / C
    M = K + clf.kernel_ridge * np.eye(K.shape[0])
    q = np.einsum("ij,ji->i", K_cross, np.linalg.pinv(M, hermitian=True) @ K_cross.T)
    return prior - q, prior, K, K_cross


def assert_close(variance, want, prior, rtol=1e-3, prior_rtol=1e-6):
    """``|variance - want| <= rtol |want| + prior_rtol prior`` elementwise."""
    error = np.abs(variance - want)
    bound = rtol * np.abs(want) + prior_rtol * prior
    assert np.all(error <= bound), np.max(error / bound)


# ------------------------------------------------------------------ predict_variance

@pytest.mark.parametrize("solver", ["dense", "matrix_free"])
@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_variance_matches_the_float64_gp_formula(fits, solver, ridge):
    clf = fits[solver, ridge]
    variance = clf.predict_variance(X_TEST)
    want, prior, K, _ = float64_gp(clf, X_TEST)
    assert variance.shape == (X_TEST.shape[0],) and variance.dtype == np.float64
    assert np.linalg.cond(K) < 1e8  # full rank: rho = 0 is a proper inverse here
    assert np.all(want > 5e-5 * prior)  # not training inputs
    # 1e-3 relative, and float32 kernels: about 1e-6 of the prior variance absolute
    # (which matters only where the variance is a tiny fraction of its prior)
    assert_close(variance, want, prior)
    far = want > 1e-3 * prior
    assert far.sum() >= 10
    np.testing.assert_allclose(variance[far], want[far], rtol=1e-3)


@pytest.mark.parametrize("solver", ["dense", "matrix_free"])
def test_variance_vanishes_at_training_inputs_without_ridge(fits, solver):
    clf = fits[solver, 0.0]
    variance = clf.predict_variance(clf.X_fit_)
    _, prior, _, _ = float64_gp(clf, clf.X_fit_)
    assert np.all(variance >= 0)
    assert np.all(variance <= 1e-5 * prior), (variance / prior).max()


@pytest.mark.parametrize("solver", ["dense", "matrix_free"])
def test_with_a_ridge_the_variance_at_training_inputs_is_at_most_the_ridge(fits, solver):
    clf = fits[solver, 0.5]
    variance = clf.predict_variance(clf.X_fit_)
    want, prior, _, _ = float64_gp(clf, clf.X_fit_)
    # rho e_i' K (K + rho I)^-1 e_i: positive, below rho and below the prior variance
    assert np.all(variance > 0) and np.all(variance <= 0.5 * (1 + 1e-3))
    assert_close(variance, want, prior)


@pytest.mark.parametrize("solver", ["dense", "matrix_free"])
def test_variance_is_nonnegative_below_the_prior_and_grows_away_from_the_data(fits, solver):
    clf = fits[solver, 0.0]
    directions = np.random.RandomState(2).normal(size=(30, 4))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    means = []
    for distance in (0.0, 0.3, 1.0, 3.0, 10.0):
        X = X30 + distance * directions
        variance = clf.predict_variance(X)
        _, prior, _, _ = float64_gp(clf, X)
        assert np.all(variance >= 0) and np.all(variance <= prior * (1 + 1e-4))
        means.append(variance.mean())
    assert np.all(np.diff(means) > 0), means


def test_variance_is_the_same_through_both_solvers_and_one_value_per_sample(fits):
    dense = fits["dense", 0.5].predict_variance(X_TEST)
    matrix_free = fits["matrix_free", 0.5].predict_variance(X_TEST)
    np.testing.assert_allclose(matrix_free, dense, rtol=1e-3)
    # one block or many, one row at a time: the same values
    np.testing.assert_allclose(np.concatenate([fits["dense", 0.5].predict_variance(X_TEST[i:i + 1])
                                               for i in range(3)]), dense[:3], rtol=1e-6)


def test_binary_variance_has_one_value_per_sample():
    X, y = X30[y30 < 2], y30[y30 < 2]
    clf = HybridNTKClassifier(**{**KERNEL, "kernel_ridge": 0.1}).fit(X, y)
    variance = clf.predict_variance(X_TEST)
    want, prior, _, _ = float64_gp(clf, X_TEST)
    assert variance.shape == (X_TEST.shape[0],)
    assert_close(variance, want, prior)


def test_set_params_and_pickling_after_fit_change_no_variance(fits):
    clf = pickle.loads(pickle.dumps(fits["dense", 0.5]))
    variance = clf.predict_variance(X_TEST)
    clf.set_params(kernel_ridge=5.0, kernel_solver="matrix_free", ntk_phase="linearized",
                   ntk_epochs=3, max_kernel_bytes=10**12, hidden_layer_sizes=(3,))
    np.testing.assert_array_equal(clf.predict_variance(X_TEST), variance)
    np.testing.assert_array_equal(fits["dense", 0.5].predict_variance(X_TEST), variance)


def test_matrix_free_variance_warns_when_cg_stops_short(monkeypatch):
    clf = kernel_fit(kernel_solver="matrix_free", kernel_ridge=0.0, kernel_max_iter=2)
    # A preconditioner of rank 200 >= N solves this tiny problem at once: make it weak.
    monkeypatch.setattr(skntk._kernel_solvers, "PRECONDITIONER_RANK", 3)
    with pytest.warns(ConvergenceWarning, match=r"predict_variance: conjugate gradients "
                                                r"did not reach.*kernel_max_iter=2"):
        variance = clf.predict_variance(X_TEST)
    want, prior, _, _ = float64_gp(clf, X_TEST)
    # CG from zero underestimates k' M^-1 k, so a truncated solve overestimates
    assert np.all(variance >= want - 1e-5 * prior.max())


def test_a_cross_kernel_over_the_fitted_budget_is_refused(fits):
    clf = pickle.loads(pickle.dumps(fits["dense", 0.5]))
    clf.max_kernel_bytes_ = 200_000  # as if fitted with a small budget
    with pytest.raises(ValueError, match=r"kernel of predict_variance.*max_kernel_bytes"):
        clf.predict_variance(X_TEST)


def test_predict_variance_is_absent_for_other_phases_and_finite_flow_time():
    for params, got in [
            (dict(ntk_phase="linearized"), r"fitted with ntk_phase='linearized'"),
            (dict(ntk_phase=None), r"fitted with ntk_phase=None"),
            (dict(ntk_epochs=4, ntk_learning_rate=1.0),
             r"fitted with ntk_phase='kernel' at the finite flow time t = .* = 4\b")]:
        clf = HybridNTKClassifier(**{**KERNEL, "ntk_epochs": 2, **params}).fit(X30, y30)
        assert not hasattr(clf, "predict_variance")
        with pytest.raises(AttributeError) as info:
            clf.predict_variance(X_TEST)
        # The reason is the error's own message, not only its cause.
        message = str(info.value)
        assert info.value.__cause__ is None
        assert "predict_variance is defined for ntk_phase='kernel' with ntk_epochs='auto' " \
               "or numpy.inf" in message
        assert "Fit with ntk_phase='kernel' and ntk_epochs='auto'" in message
        assert re.search(got, message), message
    # unfitted: judged by the parameters
    assert not hasattr(HybridNTKClassifier(), "predict_variance")
    assert not hasattr(HybridNTKClassifier(ntk_phase="kernel", ntk_epochs=3), "predict_variance")
    for epochs in ("auto", np.inf):
        unfitted = HybridNTKClassifier(ntk_phase="kernel", ntk_epochs=epochs)
        with pytest.raises(NotFittedError):
            unfitted.predict_variance(X_TEST)


# ------------------------------------------------------------- dual_coef_, X_fit_

def _relu_network(coefs, intercepts, X):
    h = np.asarray(X, np.float64)
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        h = np.maximum(h @ W + b, 0.0)
    return h @ coefs[-1] + intercepts[-1]


def by_hand(clf, X):
    """``offset(x) + K_bar(x, X_fit_) @ dual_coef_`` from the public attributes only."""
    params = list(zip(clf.switch_coefs_, clf.switch_intercepts_))
    C = clf.dual_coef_.shape[1]
    K_bar = np.asarray(empirical_ntk(params, np.asarray(X, np.float32), clf.X_fit_),
                       np.float64) / C
    offset = (np.zeros((X.shape[0], C)) if clf.kernel_offset == "zero"
              else _relu_network(clf.switch_coefs_, clf.switch_intercepts_, X))
    return offset + K_bar @ clf.dual_coef_


@pytest.mark.parametrize("solver", ["dense", "matrix_free"])
@pytest.mark.parametrize("offset", ["zero", "network"])
@pytest.mark.parametrize("ntk_epochs", [np.inf, 6])
def test_dual_coef_and_X_fit_reproduce_the_logits(solver, offset, ntk_epochs):
    clf = kernel_fit(kernel_solver=solver, kernel_offset=offset, ntk_epochs=ntk_epochs,
                     ntk_learning_rate=2.0, kernel_ridge=0.5, validation_fraction=0.2)
    n_train = 30 - 6
    assert clf.dual_coef_.shape == (n_train, 3) and clf.dual_coef_.dtype == np.float64
    assert clf.X_fit_.shape == (n_train, 4) and clf.X_fit_.dtype == np.float32
    # the training part of X, after the validation split
    rows = [np.flatnonzero((X30.astype(np.float32) == x).all(axis=1)) for x in clf.X_fit_]
    assert all(r.size == 1 for r in rows) and len({int(r[0]) for r in rows}) == n_train
    logits = clf.decision_function(X_TEST)
    want = by_hand(clf, X_TEST)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_binary_decision_function_from_dual_coef():
    X, y = X30[y30 < 2], y30[y30 < 2]
    clf = HybridNTKClassifier(**{**KERNEL, "kernel_ridge": 0.1}).fit(X, y)
    assert clf.dual_coef_.shape == (X.shape[0], 2)
    logits = by_hand(clf, X_TEST)
    np.testing.assert_allclose(clf.decision_function(X_TEST), logits[:, 1] - logits[:, 0],
                               rtol=1e-4, atol=1e-4 * np.abs(logits).max())


def test_prediction_reads_the_public_arrays(fits):
    clf = pickle.loads(pickle.dumps(fits["dense", 0.5]))
    logits = clf.decision_function(X_TEST)
    clf.dual_coef_ = 2 * clf.dual_coef_
    np.testing.assert_allclose(clf.decision_function(X_TEST), 2 * logits, rtol=1e-12)


@pytest.mark.parametrize("params", [dict(ntk_phase="linearized"), dict(ntk_phase=None),
                                    dict(ntk_phase="frozen_jacobian")])
def test_other_phases_have_no_dual_coef_and_a_refit_clears_them(fits, params):
    clf = HybridNTKClassifier(**{**KERNEL, "ntk_epochs": 2, **params}).fit(X30, y30)
    assert not hasattr(clf, "dual_coef_") and not hasattr(clf, "X_fit_")
    kernel = pickle.loads(pickle.dumps(fits["dense", 0.0]))
    assert hasattr(kernel, "dual_coef_")
    kernel.set_params(ntk_epochs=2, **params).fit(X30, y30)
    assert not hasattr(kernel, "dual_coef_") and not hasattr(kernel, "X_fit_")


@pytest.mark.parametrize("layers", [(), (8, 6)])
def test_kernel_diagonal_is_the_diagonal_of_the_kernel(layers):
    params = params_to_jax(init_mlp_params((4, *layers, 3), np.random.RandomState(0),
                                           np.float32))
    X = X_TEST.astype(np.float32)
    want = np.diag(np.asarray(empirical_ntk(params, X), np.float64)) / 3
    np.testing.assert_allclose(kernel_diagonal(params, X, 3, block_size=5), want, rtol=1e-5)
