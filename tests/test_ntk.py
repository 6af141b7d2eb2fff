import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from skntk._matrix_free import fast_ntk_vector_product
from skntk._mlp import init_mlp_params, mlp_forward
from skntk.ntk import (
    DEFAULT_MAX_KERNEL_BYTES,
    check_kernel_budget,
    empirical_ntk,
    empirical_ntk_reference,
    frobenius_distance,
    kernel_distance,
    kernel_nbytes,
    kernel_target_alignment,
    ntk_gram,
    ntk_vector_product,
)

N_FEATURES, N_CLASSES, N1, N2 = 5, 3, 11, 6
DEPTHS = [(), (7,), (6, 5, 4)]


def make_problem(hidden, dtype=np.float32, seed=0):
    """Parameters with non-zero biases and two input sets of different sizes."""
    rng = np.random.RandomState(seed)
    params = init_mlp_params((N_FEATURES, *hidden, N_CLASSES), rng, dtype=np.float64)
    params = [(W.astype(dtype), (0.1 * rng.standard_normal(b.shape)).astype(dtype))
              for W, b in params]
    X1 = rng.standard_normal((N1, N_FEATURES)).astype(dtype)
    X2 = rng.standard_normal((N2, N_FEATURES)).astype(dtype)
    return params, X1, X2


def rel_error(A, B):
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    return np.linalg.norm(A - B) / np.linalg.norm(B)


@pytest.mark.parametrize("hidden", DEPTHS)
@pytest.mark.parametrize("cross", [False, True])
def test_layerwise_matches_reference_float32(hidden, cross):
    params, X1, X2 = make_problem(hidden)
    X2 = X2 if cross else None
    K = empirical_ntk(params, X1, X2)
    assert K.dtype == jnp.float32
    assert K.shape == (N1, N2 if cross else N1)
    assert rel_error(K, empirical_ntk_reference(mlp_forward, params, X1, X2)) < 1e-5


def test_no_hidden_layer_by_hand():
    # f = x W + b: J_c(x) = (x ⊗ e_c, e_c), so K = C (x·x' + 1).
    params, X1, X2 = make_problem(())
    expected = N_CLASSES * (X1.astype(np.float64) @ X2.T + 1)
    assert rel_error(empirical_ntk(params, X1, X2), expected) < 1e-6


@pytest.mark.parametrize("cross", [False, True])
def test_blocked_equals_unblocked(cross):
    params, X1, X2 = make_problem((6, 5, 4))
    X2 = X2 if cross else None
    whole = empirical_ntk(params, X1, X2, block_size=64)
    blocked = empirical_ntk(params, X1, X2, block_size=4)  # 4 does not divide 11
    np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-6 * np.abs(whole).max())
    np.testing.assert_allclose(ntk_gram(params, X1), empirical_ntk(params, X1, block_size=4),
                               rtol=1e-6, atol=1e-6 * np.abs(whole).max())


@pytest.mark.parametrize("hidden", [(), (6, 5, 4)])
def test_per_logit_kernel(hidden):
    params, X1, X2 = make_problem(hidden)
    for other, block in ((None, 64), (X2, 4)):
        K = empirical_ntk(params, X1, other, per_logit=True, block_size=block)
        n2 = N1 if other is None else N2
        assert K.shape == (N1, n2, N_CLASSES, N_CLASSES)
        reference = empirical_ntk_reference(mlp_forward, params, X1, other, per_logit=True)
        assert rel_error(K, reference) < 1e-5
        traced = empirical_ntk(params, X1, other)
        assert rel_error(jnp.einsum("ijcc->ij", K), traced) < 1e-6


@pytest.mark.parametrize("cross", [False, True])
def test_ntk_vector_product(cross):
    params, X1, X2 = make_problem((6, 5, 4))
    other = X2 if cross else None
    K = np.asarray(empirical_ntk(params, X1, other), dtype=np.float64)
    rng = np.random.RandomState(1)
    for shape in ((K.shape[1],), (K.shape[1], 2)):
        V = rng.standard_normal(shape).astype(np.float32)
        KV = ntk_vector_product(params, X1, V, X2=other, block_size=4)
        assert KV.shape == (N1, *shape[1:])
        assert rel_error(KV, K @ V) < 1e-5


def test_both_vector_products_check_their_inputs_alike():
    """The public product and the one of the matrix-free solver are one product with one
    set of input checks: the same error for every bad input."""
    params, X1, X2 = make_problem((7,))
    V = np.ones(N1, np.float32)
    bad = {
        "`V` must have shape": dict(V=np.ones(N1 + 1)),
        r"`V` contains NaN": dict(V=np.full(N1, np.nan)),
        "`X` must have shape": dict(X=X1[:, :2]),
        "`X2` must have shape": dict(X2=X2[:, :2], V=np.ones(N2)),
        r"`X2` contains NaN": dict(X2=np.full_like(X2, np.nan), V=np.ones(N2)),
        "`block_size` must be a positive integer": dict(block_size=0),
    }
    for message, change in bad.items():
        kw = {"X": X1, "V": V, "X2": None, "block_size": 4, **change}
        for product in (ntk_vector_product, fast_ntk_vector_product):
            with pytest.raises(ValueError, match=message):
                product(params, kw["X"], kw["V"], X2=kw["X2"], block_size=kw["block_size"])
    for product in (ntk_vector_product, fast_ntk_vector_product):
        with pytest.raises(TypeError, match="`V` is a scipy sparse matrix"):
            product(params, X1, scipy.sparse.csr_matrix(np.ones((N1, 1))))


def test_integer_inputs_give_float32():
    params, X1, _ = make_problem((7,))
    K = empirical_ntk(params, np.round(X1 * 3).astype(np.int64))
    assert K.dtype == jnp.float32


def test_statistics_by_hand():
    rng = np.random.RandomState(0)
    A = rng.standard_normal((4, 4))
    K1, K2 = A @ A.T, np.eye(4)
    assert frobenius_distance(K1, K2) == pytest.approx(np.linalg.norm(K1 - K2))
    assert kernel_distance(K1, 2 * K1) == pytest.approx(0.0, abs=1e-12)
    E1, E2 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    assert kernel_distance(E1, E2) == pytest.approx(1.0)
    assert kernel_distance(E1, -E1) == pytest.approx(2.0)
    # An ideal kernel YYᵀ is perfectly aligned with its targets, labels or one-hot.
    labels = np.array([0, 1, 1, 2, 0])
    Y = np.eye(3)[labels]
    assert kernel_target_alignment(Y @ Y.T, labels) == pytest.approx(1.0)
    assert kernel_target_alignment(Y @ Y.T, Y) == pytest.approx(1.0)
    expected = np.sum(K1[:4, :4] * (Y[:4] @ Y[:4].T)) / (
        np.linalg.norm(K1) * np.linalg.norm(Y[:4] @ Y[:4].T))
    assert kernel_target_alignment(K1, labels[:4]) == pytest.approx(expected)
    assert kernel_target_alignment(K1, Y[:4]) == pytest.approx(expected)
    assert isinstance(kernel_distance(K1, K2), float)


def test_statistics_on_jax_arrays_under_jit():
    rng = np.random.RandomState(0)
    K1, K2 = rng.standard_normal((2, 5, 5)).astype(np.float32)

    @jax.jit
    def stats(a, b):
        return frobenius_distance(a, b), kernel_distance(a, b)

    fro, dist = stats(jnp.asarray(K1), jnp.asarray(K2))
    assert fro.shape == () and dist.shape == ()
    assert float(fro) == pytest.approx(frobenius_distance(K1, K2), rel=1e-5)
    assert float(dist) == pytest.approx(kernel_distance(K1, K2), rel=1e-5, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 100.0))
def test_kernel_distance_is_scale_free(seed, scale):
    A = np.random.RandomState(seed).standard_normal((4, 3))
    K = A @ A.T
    assert kernel_distance(K, scale * K) == pytest.approx(0.0, abs=1e-12)
    assert frobenius_distance(K, scale * K) == pytest.approx(abs(1 - scale) * np.linalg.norm(K))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_kernel_distance_of_psd_kernels_is_in_the_unit_interval(seed, rank):
    # Gram matrices, as every empirical NTK is, have <K1, K2>_F = tr(K1 K2) >= 0.
    rng = np.random.RandomState(seed)
    A, B = rng.standard_normal((2, 6, rank))
    distance = kernel_distance(A @ A.T, B @ B.T)
    assert -1e-12 <= distance <= 1.0
    params, X1, _ = make_problem((7,), seed=seed % 100)
    K = np.asarray(empirical_ntk(params, X1), dtype=np.float64)
    assert -1e-6 <= kernel_distance(K, np.asarray(empirical_ntk(params, X1 + 1))) <= 1.0
    assert kernel_distance(K, -K) == pytest.approx(2.0)  # not PSD: up to 2


def test_memory_guard():
    params, X1, X2 = make_problem((7,))
    with pytest.raises(ValueError, match=r"MiB.*`max_bytes`.*ntk_vector_product"):
        empirical_ntk(params, X1, X2, max_bytes=100)
    with pytest.raises(ValueError, match=r"\(100000, 100000\).*37\.25 GiB"):
        check_kernel_budget(100_000, 100_000, np.float32, None)
    with pytest.raises(ValueError, match="lower `ntk_monitor_size`"):
        check_kernel_budget(300, 300, np.float32, 1000, what="monitor kernel",
                            fix_hint="lower `ntk_monitor_size`")
    assert check_kernel_budget(10, 10, np.float32, None) == 400
    assert kernel_nbytes(3, 5, np.float64) == 120
    assert kernel_nbytes(3, 5, np.float32, per_logit_classes=2) == 240
    assert DEFAULT_MAX_KERNEL_BYTES == 2 * 1024**3


def test_bad_inputs():
    params, X1, _ = make_problem((7,))
    with pytest.raises(ValueError, match="`X2` must have shape"):
        empirical_ntk(params, X1, X1[:, :2])
    with pytest.raises(ValueError, match="`block_size`"):
        empirical_ntk(params, X1, block_size=0)


# --------------------------------------------------------------------------------------
# Implementations of empirical_ntk
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("hidden, parameterization",
                         [((), "standard"), ((6, 5, 4), "standard"), ((6, 5, 4), "ntk")])
def test_implementations_agree_float64(hidden, parameterization):
    """The three implementations agree with each other and, in the standard
    parameterisation, with the explicit-Jacobian reference of any network (that of the
    NTK parameterisation, in the trained coordinates, is test_parameterization's), with
    rows in blocks that do not divide the 11 samples."""
    with jax.enable_x64(True):
        params, X1, X2 = make_problem(hidden, dtype=np.float64)
        for other in (None, X2):
            kernels = {impl: empirical_ntk(params, X1, other, block_size=4,
                                           parameterization=parameterization,
                                           implementation=impl)
                       for impl in ("layerwise", "jacobian", "matrix_free")}
            reference = (empirical_ntk_reference(mlp_forward, params, X1, other)
                         if parameterization == "standard" else kernels["jacobian"])
            for impl, K in kernels.items():
                assert K.dtype == jnp.float64, impl
                assert K.shape == (N1, N1 if other is None else N2), impl
                assert rel_error(K, reference) < 1e-12, impl


def test_implementations_agree_float32_and_per_logit():
    params, X1, X2 = make_problem((6, 5, 4))
    layerwise = empirical_ntk(params, X1, X2)
    for impl in ("jacobian", "matrix_free"):
        K = empirical_ntk(params, X1, X2, implementation=impl, block_size=4)
        assert K.dtype == jnp.float32
        assert rel_error(K, layerwise) < 1e-5, impl
    per_logit = empirical_ntk(params, X1, X2, per_logit=True, block_size=4)
    jacobian = empirical_ntk(params, X1, X2, per_logit=True, implementation="jacobian")
    assert jacobian.shape == (N1, N2, N_CLASSES, N_CLASSES)
    assert rel_error(jacobian, per_logit) < 1e-5


def test_implementation_argument_is_checked():
    params, X1, X2 = make_problem((7,))
    with pytest.raises(ValueError, match="`implementation` must be one of"):
        empirical_ntk(params, X1, implementation="structured")
    with pytest.raises(ValueError, match="traced kernel only; pass per_logit=False"):
        empirical_ntk(params, X1, per_logit=True, implementation="matrix_free")
    with pytest.raises(ValueError, match="pass mesh=None"):
        empirical_ntk(params, X1, mesh=object(), implementation="jacobian")
    # Each implementation's own working memory is checked against the budget: the
    # Jacobians of 11 + 6 samples, 3 logits and 66 parameters need 2 * 4 * 17 * 3 * 66
    # bytes beside the 264-byte kernel.
    with pytest.raises(ValueError, match="27,192 bytes"):
        empirical_ntk(params, X1, X2, implementation="jacobian", max_bytes=5000)
    assert empirical_ntk(params, X1, X2, implementation="jacobian",
                         max_bytes=264 + 2 * 4 * 17 * 3 * 66).shape == (N1, N2)
