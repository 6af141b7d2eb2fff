"""The closed-form kernel phase against independent float64 references."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.special import softmax

from skntk import HybridNTKClassifier
from skntk._buckets import Rows
from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk._phases import KernelPhase, PhaseSettings
from skntk.ntk import empirical_ntk_reference

from .conftest import blobs


def _problem(seed=0, n=30, n_test=7, d=4, C=3):
    rng = np.random.RandomState(seed)
    params = params_to_jax(init_mlp_params((d, 12, C), rng, np.float64))
    X = jnp.asarray(rng.normal(size=(n, d)))
    X_test = jnp.asarray(rng.normal(size=(n_test, d)))
    Y = np.eye(C)[np.arange(n) % C]
    return params, X, X_test, Y


def _reference(params, X, X_test, Y, t, ridge=0.0):
    """Train and test outputs from expm / a direct solve on the explicit-Jacobian kernel."""
    C = Y.shape[1]
    n = X.shape[0]
    K = np.asarray(empirical_ntk_reference(mlp_forward, params, X)) / C
    K_cross = np.asarray(empirical_ntk_reference(mlp_forward, params, X_test, X)) / C
    F0 = np.asarray(mlp_forward(params, X))
    F0_test = np.asarray(mlp_forward(params, X_test))
    if np.isinf(t):
        A = scipy.linalg.solve(K + ridge * np.eye(n), Y - F0, assume_a="pos")
        return F0 + K @ A, F0_test + K_cross @ A
    decay = scipy.linalg.expm(-t * K / n)
    A = scipy.linalg.pinvh(K) @ (np.eye(n) - decay) @ (Y - F0)
    return Y + decay @ (F0 - Y), F0_test + K_cross @ A


def _run_phase(params, X, X_test, Y, learning_rate, n_epochs, ridge=0.0):
    settings = PhaseSettings(learning_rate, n_epochs, ridge, None)
    state = KernelPhase.start(params, X, jnp.asarray(Y), settings)
    for epoch in KernelPhase.epochs(settings):
        state = KernelPhase.step(state, epoch, settings)
    return KernelPhase.outputs(state, X), KernelPhase.outputs(state, X_test)


@pytest.mark.parametrize("learning_rate, n_epochs", [(0.5, 4), (3.0, 20)])
def test_kernel_phase_equals_matrix_exponential(learning_rate, n_epochs):
    with jax.enable_x64(True):
        params, X, X_test, Y = _problem()
        train, test = _run_phase(params, X, X_test, Y, learning_rate, n_epochs)
        want_train, want_test = _reference(params, X, X_test, Y, learning_rate * n_epochs)
    np.testing.assert_allclose(train, want_train, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(test, want_test, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("learning_rate, n_epochs, ridge", [(2.0, 5, 0.0), (1.0, np.inf, 0.1)])
def test_both_solvers_give_the_same_dual_coefficients_and_outputs(learning_rate, n_epochs,
                                                                  ridge):
    """Dense (eigendecomposition) and matrix-free (Lanczos at finite t, conjugate
    gradients at t = inf) solvers in float64, against the expm / direct-solve
    reference: the same dual coefficients, training outputs, validation metrics
    (from the state built at start) and predictions (one path for both)."""
    with jax.enable_x64(True):
        params, X, X_test, Y = _problem(seed=2)
        Y_test = jnp.asarray(np.eye(3)[np.arange(X_test.shape[0]) % 3])
        val = Rows(X_test, Y_test, None, X_test.shape[0])
        got = {}
        for solver in ("dense", "matrix_free"):
            settings = PhaseSettings(learning_rate, n_epochs, ridge, None, kernel_tol=1e-12,
                                     kernel_max_iter=100, kernel_solver=solver)
            state = KernelPhase.start(params, X, jnp.asarray(Y), settings, val=val)
            for epoch in KernelPhase.epochs(settings):
                state, report = KernelPhase.step_and_report(state, epoch, settings,
                                                            Rows(X, jnp.asarray(Y), None, 30),
                                                            val)
            fitted = dict(KernelPhase.fitted_state(state, settings), layer_scales=None)
            got[solver] = (fitted["dual_coef_"], state.train_logits,
                           KernelPhase.predict_outputs(params, params, fitted, X_test), report)
        want_train, want_test = _reference(params, X, X_test, Y, learning_rate * n_epochs,
                                           ridge)
    for A, train, test, report in got.values():
        np.testing.assert_allclose(train, want_train, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(test, want_test, rtol=1e-6, atol=1e-9)
        assert report[0] == 1.0 and np.all(np.isfinite(report))
    (A_dense, *_, report_dense), (A_free, *_, report_free) = got.values()
    np.testing.assert_allclose(A_free, A_dense, rtol=1e-6, atol=1e-9 * np.abs(A_dense).max())
    np.testing.assert_allclose(report_free, report_dense, rtol=1e-8)


def test_kernel_regression_equals_ridge_solve():
    with jax.enable_x64(True):
        params, X, X_test, Y = _problem(seed=1)
        train, test = _run_phase(params, X, X_test, Y, 1.0, np.inf, ridge=0.1)
        want_train, want_test = _reference(params, X, X_test, Y, np.inf, ridge=0.1)
    np.testing.assert_allclose(train, want_train, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(test, want_test, rtol=1e-6, atol=1e-9)


def test_estimator_predictions_follow_the_flow_in_float32():
    X, y = blobs(n_samples=40, n_features=4)
    clf = HybridNTKClassifier(hidden_layer_sizes=(12,), max_sgd_epochs=3, switch=None,
                              ntk_phase="kernel", ntk_learning_rate=2.0, ntk_epochs=5,
                              kernel_offset="network", validation_fraction=None,
                              random_state=0).fit(X, y)
    X_test = X[:9] + 0.3
    with jax.enable_x64(True):
        params = [(jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64))
                  for W, b in zip(clf.switch_coefs_, clf.switch_intercepts_)]
        X32 = jnp.asarray(X.astype(np.float32), jnp.float64)
        Xt32 = jnp.asarray(X_test.astype(np.float32), jnp.float64)
        _, want_test = _reference(params, X32, Xt32, np.eye(3)[y], 10.0)
    np.testing.assert_allclose(clf.predict_proba(X_test), softmax(want_test, axis=1), atol=1e-4)


def test_duplicate_rows_with_zero_ridge_and_long_flow_stay_finite():
    X, y = blobs(n_samples=30, n_features=4)
    X = np.vstack([X, X[:10]])
    y = np.concatenate([y, y[:10]])
    kw = dict(hidden_layer_sizes=(12,), max_sgd_epochs=2, switch=None, ntk_phase="kernel",
              kernel_ridge=0.0, validation_fraction=None, random_state=0)
    long_flow = HybridNTKClassifier(**kw, ntk_learning_rate=1e5, ntk_epochs=10).fit(X, y)
    regression = HybridNTKClassifier(**kw, ntk_epochs=np.inf).fit(X, y)
    p_long, p_inf = long_flow.predict_proba(X), regression.predict_proba(X)
    assert np.all(np.isfinite(p_long)) and np.all(np.isfinite(p_inf))
    np.testing.assert_allclose(p_long, p_inf, atol=1e-3)
    assert np.isfinite(long_flow.history_["train_loss"]).all()


def test_kernel_memory_guard_refuses_before_allocating():
    X, y = blobs(n_samples=60)
    clf = HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=1, switch=None,
                              ntk_phase="kernel", kernel_solver="dense", max_kernel_bytes=10_000,
                              random_state=0)
    with pytest.raises(ValueError, match="frozen_jacobian"):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")


@pytest.mark.parametrize("ntk_epochs, ridge", [(6, 0.0), (6, 1.0), (np.inf, 1.0)])
def test_matrix_free_solver_agrees_with_dense(ntk_epochs, ridge):
    X, y = blobs(n_samples=90, n_features=5)
    kw = dict(hidden_layer_sizes=(16,), max_sgd_epochs=3, switch=None, ntk_phase="kernel",
              ntk_learning_rate=2.0, ntk_epochs=ntk_epochs, kernel_ridge=ridge,
              kernel_tol=5e-5, random_state=0)
    dense = HybridNTKClassifier(kernel_solver="dense", **kw).fit(X, y)
    matrix_free = HybridNTKClassifier(kernel_solver="matrix_free", **kw).fit(X, y)
    assert dense.kernel_solver_ == "dense" and matrix_free.kernel_solver_ == "matrix_free"
    # float32 kernels, kernel_tol=5e-5 (above the float32 product's round-off floor,
    # 1e-5 to 2e-5 by the CPU's vector units): the logits agree to about 1e-5 of their
    # scale
    # (one prediction path for both), and with a ridge the dual coefficients too. At
    # rho = 0 these differ along directions that the kernel nearly annihilates (the
    # dense solver drops them, Lanczos resolves them to its tolerance), which no
    # output sees.
    logits = dense.decision_function(X + 0.2)
    np.testing.assert_allclose(matrix_free.decision_function(X + 0.2), logits, rtol=0,
                               atol=1e-4 * np.abs(logits).max())
    if ridge > 0:
        np.testing.assert_allclose(matrix_free.dual_coef_, dense.dual_coef_, rtol=0,
                                   atol=2e-4 * np.abs(dense.dual_coef_).max())
    np.testing.assert_allclose(matrix_free.predict_proba(X + 0.2), dense.predict_proba(X + 0.2),
                               atol=1e-4)
    np.testing.assert_allclose(matrix_free.history_["train_loss"], dense.history_["train_loss"],
                               rtol=1e-4)
    iterations = matrix_free.history_["kernel_iterations"]
    assert np.isnan(iterations[:3]).all() and (iterations[3:] >= 1).all()
    assert np.all(matrix_free.kernel_solver_info_["converged"])


def test_auto_solver_goes_matrix_free_when_the_kernel_exceeds_the_budget():
    X, y = blobs(n_samples=120, n_features=5)
    kw = dict(hidden_layer_sizes=(8,), max_sgd_epochs=1, switch=None, ntk_phase="kernel",
              ntk_epochs=np.inf, kernel_ridge=1.0, random_state=0)
    assert HybridNTKClassifier(**kw).fit(X, y).kernel_solver_ == "dense"
    small = HybridNTKClassifier(max_kernel_bytes=50_000, **kw).fit(X, y)
    assert small.kernel_solver_ == "matrix_free"
    restored = pickle.loads(pickle.dumps(small))
    np.testing.assert_array_equal(restored.predict_proba(X), small.predict_proba(X))
    with pytest.raises(ValueError, match="max_kernel_bytes"):
        HybridNTKClassifier(max_kernel_bytes=50_000, kernel_solver="dense", **kw).fit(X, y)


# --------------------------------------------------------------------------------------
# Divergence guards of the kernel phase
# --------------------------------------------------------------------------------------

def _overflowing_inputs():
    """Inputs at 1e19: finite in float32, but the NTK, which grows like the square of
    the input scale, overflows float32 (about 3.4e38); the logits (linear in it) do
    not, so the fit reaches the kernel phase."""
    X = (np.random.RandomState(0).standard_normal((40, 3)) * 1e19).astype(np.float32)
    return X, np.arange(40) % 2


KERNEL_AT_INIT = dict(hidden_layer_sizes=(4,), max_sgd_epochs=0, switch=None,
                      ntk_phase="kernel", ntk_epochs=3, ntk_learning_rate=1.0,
                      validation_fraction=None, random_state=0)


def test_dense_kernel_phase_refuses_an_overflowing_kernel():
    X, y = _overflowing_inputs()
    clf = HybridNTKClassifier(kernel_solver="dense", **KERNEL_AT_INIT)
    with pytest.raises(ValueError, match=r"K_bar contains \d+ NaN or infinite value"):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ntk_epochs", [3, np.inf])
def test_matrix_free_kernel_phase_refuses_an_overflowing_kernel(ntk_epochs):
    """Lanczos (finite flow time) and preconditioned CG (infinite) stop at the first
    non-finite kernel product, with a message that names the cause."""
    X, y = _overflowing_inputs()
    clf = HybridNTKClassifier(kernel_solver="matrix_free", **{**KERNEL_AT_INIT,
                                                              "ntk_epochs": ntk_epochs})
    with pytest.raises(ValueError, match="overflows float32.*Standardise the inputs"):
        clf.fit(X, y)
    X_small = X / 1e19
    assert HybridNTKClassifier(kernel_solver="matrix_free", **{
        **KERNEL_AT_INIT, "ntk_epochs": ntk_epochs}).fit(X_small, y).score(X_small, y) > 0.4


def test_training_loop_stops_on_non_finite_flow_coefficients(monkeypatch):
    """The loop's check after every kernel-phase epoch: coefficients that turn NaN at
    the second epoch (injected into the flow) raise a ValueError that names them, the
    phase and its epoch, and leave the estimator unfitted."""
    import skntk._kernel_solvers as kernel_solvers

    flow_coefficients = kernel_solvers.flow_coefficients
    calls = []

    def nan_from_second_epoch(*args, **kwargs):
        calls.append(1)
        A = flow_coefficients(*args, **kwargs)
        return A if len(calls) < 2 else np.full_like(A, np.nan)

    monkeypatch.setattr(kernel_solvers, "flow_coefficients", nan_from_second_epoch)
    X, y = blobs(n_samples=40)
    clf = HybridNTKClassifier(kernel_solver="dense", **KERNEL_AT_INIT)
    with pytest.raises(ValueError, match=r"the kernel-flow coefficients became non-finite "
                                         r".*ntk_phase='kernel'\) at epoch 2 \(epoch 2 of "
                                         r"that phase\).*ntk_learning_rate"):
        clf.fit(X, y)
    assert len(calls) == 2
    assert not hasattr(clf, "coefs_")
