import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from skntk._kernel_flow import (
    eigendecompose_kernel,
    flow_coefficients,
    flow_filter,
    flow_outputs,
    flow_train_outputs,
    project_residual,
)

N_CLASSES = 3


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def make_problem(rng, n=30, p=None, n_new=12, features=None):
    """Gram kernels Φ Φᵀ / p, a cross kernel, outputs and one-hot targets."""
    p = 8 * n if p is None else p
    phi = rng.standard_normal((n, p)) if features is None else features
    phi_new = rng.standard_normal((n_new, phi.shape[1]))
    scale = phi.shape[1]
    K = phi @ phi.T / scale
    K_cross = phi_new @ phi.T / scale
    F0 = rng.standard_normal((n, N_CLASSES))
    F0_new = rng.standard_normal((n_new, N_CLASSES))
    Y = np.eye(N_CLASSES)[rng.integers(N_CLASSES, size=n)]
    return K, K_cross, F0, F0_new, Y


def run_flow(K, K_cross, F0, F0_new, Y, t, ridge=0.0):
    n = K.shape[0]
    lam, V = eigendecompose_kernel(K, ridge)
    A = flow_coefficients(lam, V, Y - F0, t, n)
    train = flow_train_outputs(lam, V, Y - F0, F0, t, n, ridge)
    test = flow_outputs(K_cross, A, F0_new)
    return A, train, test


def expm_train(K, F0, Y, t):
    n = K.shape[0]
    return Y + scipy.linalg.expm(-t * K / n) @ (F0 - Y)


@pytest.mark.parametrize("t", [0.3, 5.0, 40.0, 300.0])
@pytest.mark.parametrize("rank", [None, 10])
def test_train_outputs_match_matrix_exponential(t, rank):
    rng = np.random.default_rng(0)
    n = 30
    p = 8 * n if rank is None else rank
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, p=p)
    _, train, _ = run_flow(K, K_cross, F0, F0_new, Y, t)
    assert rel_err(train, expm_train(K, F0, Y, t)) < 1e-6


@pytest.mark.parametrize("t", [0.3, 5.0, 40.0, 300.0])
def test_test_outputs_match_direct_solve(t):
    rng = np.random.default_rng(1)
    n = 25
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n)
    assert np.linalg.cond(K) < 10
    _, _, test = run_flow(K, K_cross, F0, F0_new, Y, t)
    I_minus_exp = np.eye(n) - scipy.linalg.expm(-t * K / n)
    expected = F0_new + K_cross @ scipy.linalg.solve(K, I_minus_exp @ (Y - F0))
    assert rel_err(test, expected) < 1e-6


@pytest.mark.parametrize("ridge,rank", [(1e-2, None), (1e-2, 12), (0.5, 12), (0.0, None)])
def test_infinite_time_is_kernel_ridge_regression(ridge, rank):
    rng = np.random.default_rng(2)
    n = 30
    p = 8 * n if rank is None else rank
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, p=p)
    A, train, test = run_flow(K, K_cross, F0, F0_new, Y, np.inf, ridge)
    A_direct = scipy.linalg.solve(K + ridge * np.eye(n), Y - F0, assume_a="pos")
    assert rel_err(A, A_direct) < 1e-6
    assert rel_err(train, F0 + K @ A_direct) < 1e-6
    assert rel_err(test, F0_new + K_cross @ A_direct) < 1e-6


def test_ridge_flow_matches_shifted_kernel_exponential():
    # g(K + ρI) applied to the residual, train outputs through K itself.
    rng = np.random.default_rng(3)
    n, t, ridge = 30, 20.0, 0.3
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, p=10)
    A, train, test = run_flow(K, K_cross, F0, F0_new, Y, t, ridge)
    K_r = K + ridge * np.eye(n)
    A_direct = scipy.linalg.solve(
        K_r, (np.eye(n) - scipy.linalg.expm(-t * K_r / n)) @ (Y - F0)
    )
    assert rel_err(A, A_direct) < 1e-6
    assert rel_err(train, F0 + K @ A_direct) < 1e-6
    assert rel_err(test, F0_new + K_cross @ A_direct) < 1e-6


def test_time_zero_returns_initial_outputs_exactly():
    rng = np.random.default_rng(4)
    K, K_cross, F0, F0_new, Y = make_problem(rng)
    A, train, test = run_flow(K, K_cross, F0, F0_new, Y, 0.0, ridge=0.1)
    assert np.all(A == 0)
    np.testing.assert_array_equal(train, F0)
    np.testing.assert_array_equal(test, F0_new)


def test_duplicate_rows_singular_kernel():
    rng = np.random.default_rng(5)
    n, p = 30, 200
    phi = rng.standard_normal((n, p))
    phi[20:] = phi[:10]  # ten duplicated training rows
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, features=phi)
    lam, _ = eigendecompose_kernel(K)
    assert np.sum(lam == 0) == 10

    A_big, train_big, test_big = run_flow(K, K_cross, F0, F0_new, Y, 1e6)
    A_inf, train_inf, test_inf = run_flow(K, K_cross, F0, F0_new, Y, np.inf)
    for arr in (A_big, train_big, test_big, A_inf, train_inf, test_inf):
        assert np.all(np.isfinite(arr))
        assert np.abs(arr).max() < 1e3
    assert rel_err(test_big, test_inf) < 1e-8
    assert rel_err(train_big, train_inf) < 1e-8
    # At t = inf the pseudo-inverse fits the range of K: duplicated rows get the
    # mean of their targets.
    expected = F0 + K @ np.linalg.pinv(K, hermitian=True) @ (Y - F0)
    assert rel_err(train_inf, expected) < 1e-6
    assert rel_err(train_big, expm_train(K, F0, Y, 1e6)) < 1e-6


def test_round_off_negative_eigenvalues():
    rng = np.random.default_rng(6)
    n = 30
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, p=12)
    noise = 1e-12 * rng.standard_normal((n, n))
    K_noisy = K + (noise + noise.T) / 2
    assert scipy.linalg.eigvalsh(K_noisy).min() < 0

    lam, _ = eigendecompose_kernel(K_noisy)
    assert np.all(lam >= 0)
    for t in (1.0, 50.0, 1e6, np.inf):
        for ridge in (0.0, 1e-3):
            outs = run_flow(K_noisy, K_cross, F0, F0_new, Y, t, ridge)
            assert all(np.all(np.isfinite(o)) for o in outs)
    _, train, _ = run_flow(K_noisy, K_cross, F0, F0_new, Y, 50.0)
    assert rel_err(train, expm_train(K, F0, Y, 50.0)) < 1e-6


def test_near_duplicate_points():
    rng = np.random.default_rng(7)
    n, p = 30, 200
    phi = rng.standard_normal((n, p))
    phi[20:] = phi[:10] + 1e-9 * rng.standard_normal((10, p))
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, features=phi)

    _, train_inf, test_inf = run_flow(K, K_cross, F0, F0_new, Y, np.inf)
    _, train_big, test_big = run_flow(K, K_cross, F0, F0_new, Y, 1e4)
    for arr in (train_inf, test_inf, train_big, test_big):
        assert np.all(np.isfinite(arr))
    assert rel_err(train_big, train_inf) < 1e-6
    assert rel_err(test_big, test_inf) < 1e-6
    # The network itself gives near-duplicates the same outputs; with different
    # targets they cannot both be fitted, and meet at the mean of their targets.
    F0_same = F0.copy()
    F0_same[20:] = F0[:10]
    _, train_inf, _ = run_flow(K, K_cross, F0_same, F0_new, Y, np.inf)
    np.testing.assert_allclose(train_inf[:10], (Y[:10] + Y[20:]) / 2, atol=1e-6)
    np.testing.assert_allclose(train_inf[20:], (Y[:10] + Y[20:]) / 2, atol=1e-6)


@pytest.mark.parametrize("duplicates", [False, True])
def test_float32_kernel(duplicates):
    rng = np.random.default_rng(8)
    n, p = 30, 240
    phi = rng.standard_normal((n, p))
    if duplicates:
        phi[20:] = phi[:10]
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, features=phi)
    # Relative noise of 1e-7 stands in for float32 accumulation error, so that
    # duplicated rows no longer give exactly zero eigenvalues.
    noise = 1e-7 * rng.standard_normal(K.shape)
    K32 = (K + (noise + noise.T) / 2).astype(np.float32)
    K_cross32 = K_cross.astype(np.float32)
    for t in (10.0, 1e6, np.inf):
        A64, train64, test64 = run_flow(K, K_cross, F0, F0_new, Y, t)
        A32, train32, test32 = run_flow(K32, K_cross32, F0, F0_new, Y, t)
        assert A32.dtype == train32.dtype == test32.dtype == np.float64
        assert rel_err(train32, train64) < 1e-4
        assert rel_err(test32, test64) < 1e-4


def test_precomputed_projection_matches_residual():
    rng = np.random.default_rng(9)
    n = 30
    K, K_cross, F0, F0_new, Y = make_problem(rng, n=n, p=15)
    lam, V = eigendecompose_kernel(K, 0.01)
    proj = project_residual(V, Y - F0)
    for t in (0.5, 7.0, np.inf):
        np.testing.assert_allclose(
            flow_coefficients(lam, V, proj, t, n, projected=True),
            flow_coefficients(lam, V, Y - F0, t, n), rtol=0, atol=1e-12,
        )
        np.testing.assert_allclose(
            flow_train_outputs(lam, V, proj, F0, t, n, 0.01, projected=True),
            flow_train_outputs(lam, V, Y - F0, F0, t, n, 0.01), rtol=0, atol=1e-12,
        )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rank=st.integers(1, 20),
    t1=st.floats(0, 1e3),
    t2=st.floats(0, 1e3),
)
def test_flow_is_a_semigroup(seed, rank, t1, t2):
    # Flowing t1 then t2 from the intermediate outputs equals flowing t1 + t2.
    rng = np.random.default_rng(seed)
    n = 20
    K, _, F0, _, Y = make_problem(rng, n=n, p=rank)
    lam, V = eigendecompose_kernel(K)
    f1 = flow_train_outputs(lam, V, Y - F0, F0, t1, n)
    f12 = flow_train_outputs(lam, V, Y - f1, f1, t2, n)
    f_sum = flow_train_outputs(lam, V, Y - F0, F0, t1 + t2, n)
    np.testing.assert_allclose(f12, f_sum, rtol=0, atol=1e-9)


def test_flow_filter_values():
    lam = np.array([0.0, 1e-300, 1e-20, 1e-3, 1.0, 1e8])
    n, t = 10, 3.0
    g = flow_filter(lam, t, n)
    assert g[0] == 0
    # Small tλ/N: the filter approaches t/N without cancellation.
    np.testing.assert_allclose(g[1:3], t / n, rtol=1e-12)
    np.testing.assert_allclose(g[3:], (1 - np.exp(-t * lam[3:] / n)) / lam[3:], rtol=1e-12)
    np.testing.assert_array_equal(flow_filter(lam, np.inf, n), np.r_[0.0, 1 / lam[1:]])
    np.testing.assert_array_equal(flow_filter(lam, 0, n), np.zeros_like(lam))
    assert np.all(np.isfinite(flow_filter(lam, 1e300, n)))


@pytest.mark.parametrize("t", [-1.0, np.nan, -np.inf])
def test_flow_filter_rejects_bad_time(t):
    with pytest.raises(ValueError, match="flow time"):
        flow_filter(np.ones(3), t, 3)


def test_flow_filter_rejects_negative_eigenvalues():
    with pytest.raises(ValueError, match="eigendecompose_kernel"):
        flow_filter(np.array([1.0, -1e-14]), 1.0, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_kernel_raises(bad):
    K = np.eye(4)
    K[1, 2] = K[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite.*smaller learning rate"):
        eigendecompose_kernel(K)


def test_nonfinite_residual_and_cross_kernel_raise():
    lam, V = eigendecompose_kernel(np.eye(3))
    R = np.zeros((3, 2))
    R[0, 0] = np.nan
    with pytest.raises(ValueError, match="residual"):
        flow_coefficients(lam, V, R, 1.0, 3)
    K_cross = np.full((2, 3), np.inf)
    with pytest.raises(ValueError, match="cross kernel"):
        flow_outputs(K_cross, np.zeros((3, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize("K", [np.ones((3, 4)), np.ones(3), np.ones((2, 2, 2))])
def test_non_square_kernel_raises(K):
    with pytest.raises(ValueError, match="square|2-D"):
        eigendecompose_kernel(K)


@pytest.mark.parametrize("ridge", [-1.0, np.nan, np.inf])
def test_bad_ridge_raises(ridge):
    with pytest.raises(ValueError, match="ridge"):
        eigendecompose_kernel(np.eye(3), ridge)


def test_shape_mismatches_raise():
    lam, V = eigendecompose_kernel(np.eye(3))
    with pytest.raises(ValueError, match="rows"):
        flow_coefficients(lam, V, np.zeros((4, 2)), 1.0, 3)
    with pytest.raises(ValueError, match="F0"):
        flow_train_outputs(lam, V, np.zeros((3, 2)), np.zeros((3, 3)), 1.0, 3)
    with pytest.raises(ValueError, match="columns"):
        flow_outputs(np.zeros((2, 4)), np.zeros((3, 2)), np.zeros((2, 2)))


def test_asymmetric_round_off_is_symmetrised():
    rng = np.random.default_rng(10)
    K, _, _, _, _ = make_problem(rng, n=10, p=40)
    K_asym = K + 1e-13 * rng.standard_normal(K.shape)
    lam, V = eigendecompose_kernel(K_asym)
    np.testing.assert_allclose(V @ np.diag(lam) @ V.T, K, atol=1e-11)
    np.testing.assert_allclose(V.T @ V, np.eye(10), atol=1e-12)
