"""Kernel diagnostics of skntk.ntk: centred alignment, spectrum, effective rank.

Every value is checked against an independent computation written here with explicit
matrices (the centring matrix H, numpy's eigvalsh, the entropy formula), not against
the library's own helpers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from skntk._mlp import init_mlp_params
from skntk.ntk import (
    centered_kernel_alignment,
    effective_rank,
    empirical_ntk,
    kernel_spectrum,
    kernel_target_alignment,
)


def random_psd(n, rank=None, seed=0):
    rng = np.random.RandomState(seed)
    A = rng.standard_normal((n, n if rank is None else rank))
    return A @ A.T


def labels(n, n_classes=3, seed=0):
    y = np.arange(n) % n_classes
    return np.random.RandomState(seed).permutation(y)


def one_hot(y):
    classes = np.unique(y)
    return (y[:, None] == classes[None, :]).astype(np.float64)


def cka_by_hand(K, T):
    """Definition 4 of Cortes, Mohri and Rostamizadeh (JMLR 2012), with H formed."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    Kc, Tc = H @ K @ H, H @ T @ H
    return np.sum(Kc * Tc) / (np.linalg.norm(Kc) * np.linalg.norm(Tc))


def erank_by_hand(K):
    """Roy and Vetterli (EUSIPCO 2007): exp of the entropy of the normalised spectrum."""
    lam = np.clip(np.linalg.eigvalsh(K), 0, None)
    p = lam / lam.sum()
    entropy = -sum(pi * np.log(pi) for pi in p if pi > 0)
    return np.exp(entropy)


# --------------------------------------------------------------------------------------
# centered_kernel_alignment
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_centered_alignment_matches_explicit_centring(seed):
    n = 17
    K = random_psd(n, seed=seed) + 5.0  # a large constant component, removed by H
    y = labels(n, seed=seed)
    Y = one_hot(y)
    expected = cka_by_hand(K, Y @ Y.T)
    assert -1 <= expected <= 1
    value = centered_kernel_alignment(K, y)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-14)
    assert centered_kernel_alignment(K, Y) == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_centered_alignment_real_targets_by_hand():
    n = 12
    rng = np.random.RandomState(3)
    K = random_psd(n, seed=3)
    Y = rng.standard_normal((n, 2))
    assert centered_kernel_alignment(K, Y) == pytest.approx(
        cka_by_hand(K, Y @ Y.T), rel=1e-12)


def test_centered_alignment_two_by_two_by_hand():
    # n = 2: H = [[1, -1], [-1, 1]] / 2, so H M H = (m11 + m22 - m12 - m21)/4 * [[1, -1],
    # [-1, 1]] for any M, and two centred matrices are parallel: alignment is the sign
    # of K11 + K22 - 2 K12 times that of the target's (2 for two different labels).
    assert centered_kernel_alignment(np.array([[2.0, 0.5], [0.5, 1.0]]), [0, 1]) == 1.0
    assert centered_kernel_alignment(np.array([[1.0, 3.0], [3.0, 1.0]]), [0, 1]) == -1.0


def test_centered_alignment_of_target_kernel_is_one():
    y = labels(15)
    Y = one_hot(y)
    K = Y @ Y.T
    assert centered_kernel_alignment(K, y) == pytest.approx(1.0, abs=1e-14)
    # Adding a constant does not change the centred kernel, only the uncentred alignment.
    K_shifted = K + 10.0
    assert centered_kernel_alignment(K_shifted, y) == pytest.approx(1.0, abs=1e-12)
    assert kernel_target_alignment(K_shifted, y) < 0.9
    # Real targets: K = Y Yᵀ for any Y.
    Z = np.random.RandomState(0).standard_normal((15, 4))
    assert centered_kernel_alignment(Z @ Z.T, Z) == pytest.approx(1.0, abs=1e-14)


def test_centered_alignment_scale_invariant():
    K = random_psd(20, seed=4)
    y = labels(20, n_classes=4)
    base = centered_kernel_alignment(K, y)
    for scale in (1e-6, 3.0, 1e6):
        assert centered_kernel_alignment(scale * K, y) == pytest.approx(base, rel=1e-12)


def test_centered_alignment_labels_equal_one_hot():
    K = random_psd(30, seed=5)
    y = labels(30, n_classes=5, seed=5)
    # Labels need not be 0..C-1: any values, one-hot encoded over their unique values.
    y_odd = np.array([-7, 3, 100, 42, 9])[y]
    expected = centered_kernel_alignment(K, one_hot(y))
    assert centered_kernel_alignment(K, y) == pytest.approx(expected, rel=1e-12)
    assert centered_kernel_alignment(K, y_odd) == pytest.approx(expected, rel=1e-12)
    assert centered_kernel_alignment(K, y_odd.astype(str)) == pytest.approx(expected,
                                                                            rel=1e-12)


def test_centered_alignment_jax_inputs():
    K = random_psd(16, seed=6)
    y = labels(16)
    expected = cka_by_hand(K, one_hot(y) @ one_hot(y).T)
    value = centered_kernel_alignment(jnp.asarray(K, jnp.float32), jnp.asarray(y))
    assert isinstance(value, jax.Array) and value.shape == ()
    assert float(value) == pytest.approx(expected, rel=1e-5)
    jitted = jax.jit(centered_kernel_alignment)(jnp.asarray(K, jnp.float32),
                                                jnp.asarray(one_hot(y), jnp.float32))
    assert float(jitted) == pytest.approx(expected, rel=1e-5)


def test_centered_alignment_shape_errors():
    K = random_psd(6)
    with pytest.raises(ValueError, match=r"got K of shape \(6, 6\) and Y of shape \(5,\)"):
        centered_kernel_alignment(K, labels(5))
    with pytest.raises(ValueError, match=r"must be a square kernel.*K of shape \(6, 4\)"):
        centered_kernel_alignment(K[:, :4], labels(6))
    with pytest.raises(ValueError, match=r"Y of shape \(6, 2, 1\)"):
        centered_kernel_alignment(K, np.ones((6, 2, 1)))
    with pytest.raises(TypeError, match=r"`K` is a scipy sparse matrix"):
        centered_kernel_alignment(scipy.sparse.csr_matrix(K), labels(6))


def test_centered_alignment_zero_centred_errors():
    y = labels(8)
    with pytest.raises(ValueError, match=r"centred kernel H K H is zero.*constant over the "
                                         r"samples.*kernel_target_alignment"):
        centered_kernel_alignment(np.full((8, 8), 3.7), y)
    with pytest.raises(ValueError, match=r"centred kernel H K H is zero"):
        centered_kernel_alignment(np.zeros((8, 8)), y)
    with pytest.raises(ValueError, match=r"centred kernel H K H is zero"):
        centered_kernel_alignment(jnp.full((8, 8), 1e3, jnp.float32), jnp.asarray(y))
    K = random_psd(8)
    with pytest.raises(ValueError, match=r"centred target H Y Yᵀ H is zero: `Y` has a "
                                         r"single class.*at least two classes"):
        centered_kernel_alignment(K, np.zeros(8, dtype=int))
    with pytest.raises(ValueError, match=r"centred target H Y Yᵀ H is zero: every row"):
        centered_kernel_alignment(K, np.tile([0.0, 1.0, 0.0], (8, 1)))
    with pytest.raises(ValueError, match=r"`K` contains NaN or infinite"):
        centered_kernel_alignment(np.where(np.eye(8) > 0, np.nan, K), y)
    with pytest.raises(ValueError, match=r"`Y` contains NaN or infinite"):
        centered_kernel_alignment(K, np.where(one_hot(y) > 0, np.nan, 0.0))


# --------------------------------------------------------------------------------------
# kernel_spectrum
# --------------------------------------------------------------------------------------

def test_spectrum_equals_sorted_eigvalsh():
    K = random_psd(25, seed=7)
    expected = np.sort(np.linalg.eigvalsh(K))[::-1]
    spectrum = kernel_spectrum(K)
    assert isinstance(spectrum, np.ndarray) and spectrum.dtype == np.float64
    assert spectrum.shape == (25,)
    np.testing.assert_allclose(spectrum, expected, rtol=1e-10, atol=1e-10 * expected[0])
    assert np.all(np.diff(spectrum) <= 0)


def test_spectrum_by_hand():
    # [[2, 1], [1, 2]] has eigenvalues 3 and 1; diag(1, 5, 2) its diagonal, sorted.
    np.testing.assert_allclose(kernel_spectrum(np.array([[2.0, 1.0], [1.0, 2.0]])), [3, 1])
    np.testing.assert_allclose(kernel_spectrum(np.diag([1.0, 5.0, 2.0])), [5, 2, 1])


def test_spectrum_top_k():
    K = random_psd(40, rank=30, seed=8)
    full = np.sort(np.linalg.eigvalsh(K))[::-1]
    for k in (1, 3, 39, 40):
        top = kernel_spectrum(K, n_eigenvalues=k)
        assert top.shape == (k,) and top.dtype == np.float64
        np.testing.assert_allclose(top, full[:k], rtol=1e-10, atol=1e-10 * full[0])
    np.testing.assert_allclose(kernel_spectrum(K, np.int64(5)), full[:5], rtol=1e-10)
    assert kernel_spectrum(K, 100).shape == (40,)


def test_spectrum_float32_and_jax_kernels():
    K = random_psd(10, seed=9)
    expected = np.sort(np.linalg.eigvalsh(K))[::-1]
    for K_in in (K.astype(np.float32), jnp.asarray(K, jnp.float32)):
        spectrum = kernel_spectrum(K_in)
        assert isinstance(spectrum, np.ndarray) and spectrum.dtype == np.float64
        np.testing.assert_allclose(spectrum, expected, rtol=1e-5, atol=1e-5 * expected[0])


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_spectrum_n_eigenvalues_error(bad):
    with pytest.raises(ValueError, match=r"`n_eigenvalues` must be an integer >= 1"):
        kernel_spectrum(np.eye(3), n_eigenvalues=bad)


def test_spectrum_kernel_errors():
    with pytest.raises(ValueError, match=r"non-empty square kernel of shape \(n, n\), got "
                                         r"shape \(3, 4\)"):
        kernel_spectrum(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"got shape \(0, 0\)"):
        kernel_spectrum(np.ones((0, 0)))
    with pytest.raises(ValueError, match=r"`K` is not symmetric.*not a cross kernel"):
        kernel_spectrum(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"`K` contains NaN or infinite"):
        kernel_spectrum(np.array([[1.0, np.inf], [np.inf, 1.0]]))
    with pytest.raises(TypeError, match=r"traced jax array.*outside jitted code"):
        jax.jit(kernel_spectrum)(jnp.eye(3))


# --------------------------------------------------------------------------------------
# effective_rank
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_effective_rank_identity_is_n(n):
    value = effective_rank(np.eye(n))
    assert isinstance(value, float)
    assert value == pytest.approx(n, rel=1e-12)
    assert effective_rank(3.5 * np.eye(n)) == pytest.approx(n, rel=1e-12)


def test_effective_rank_rank_one_is_one():
    v = np.random.RandomState(10).standard_normal(30)
    assert effective_rank(np.outer(v, v)) == pytest.approx(1.0, abs=1e-10)
    assert effective_rank(np.ones((5, 5))) == pytest.approx(1.0, abs=1e-12)


def test_effective_rank_by_hand():
    # Eigenvalues (3, 1): p = (3/4, 1/4), H = -(3/4 log 3/4 + 1/4 log 1/4).
    entropy = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert effective_rank(np.array([[2.0, 1.0], [1.0, 2.0]])) == pytest.approx(
        np.exp(entropy), rel=1e-12)
    # k equal non-zero eigenvalues, the others zero: k.
    assert effective_rank(np.diag([2.0, 2.0, 2.0, 0.0, 0.0])) == pytest.approx(3.0, rel=1e-12)


@pytest.mark.parametrize("seed", [11, 12])
def test_effective_rank_matches_entropy_on_random_psd(seed):
    K = random_psd(40, rank=25, seed=seed)
    expected = erank_by_hand(K)
    assert 1 < expected < 25
    assert effective_rank(K) == pytest.approx(expected, rel=1e-10)
    assert effective_rank(jnp.asarray(K, jnp.float32)) == pytest.approx(expected, rel=1e-4)


def test_effective_rank_clips_rounding_negatives():
    # A rank-two PSD kernel with a tiny negative eigenvalue from perturbation: clipped.
    K = np.diag([1.0, 1.0, -1e-15])
    assert effective_rank(K) == pytest.approx(2.0, rel=1e-12)


def test_effective_rank_errors():
    with pytest.raises(ValueError, match=r"no positive eigenvalue \(the largest is 0\).*"
                                         r"non-zero positive semi-definite kernel"):
        effective_rank(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"no positive eigenvalue \(the largest is -1\)"):
        effective_rank(-np.eye(3))
    with pytest.raises(ValueError, match=r"square kernel of shape \(n, n\), got shape \(5,\)"):
        effective_rank(np.ones(5))
    with pytest.raises(ValueError, match=r"`K` is not symmetric"):
        effective_rank(np.triu(np.ones((4, 4))))


# --------------------------------------------------------------------------------------
# On an empirical NTK
# --------------------------------------------------------------------------------------

def test_diagnostics_accept_empirical_ntk():
    rng = np.random.RandomState(0)
    n, n_features, n_classes = 24, 5, 3
    params = init_mlp_params((n_features, 8, 6, n_classes), rng)
    params = [(W, (0.1 * rng.standard_normal(b.shape)).astype(np.float32)) for W, b in params]
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    y = labels(n, n_classes)
    K = empirical_ntk(params, X)
    assert isinstance(K, jax.Array) and K.dtype == jnp.float32 and K.shape == (n, n)
    K64 = np.asarray(K, dtype=np.float64)
    K64 = (K64 + K64.T) / 2

    alignment = centered_kernel_alignment(K, y)
    assert isinstance(alignment, jax.Array)
    expected = cka_by_hand(K64, one_hot(y) @ one_hot(y).T)
    assert float(alignment) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert centered_kernel_alignment(K64, y) == pytest.approx(expected, rel=1e-10)

    eigenvalues = np.sort(np.linalg.eigvalsh(K64))[::-1]
    spectrum = kernel_spectrum(K)
    np.testing.assert_allclose(spectrum, eigenvalues, rtol=1e-5, atol=1e-5 * eigenvalues[0])
    np.testing.assert_allclose(kernel_spectrum(K, 4), eigenvalues[:4], rtol=1e-5)

    rank = effective_rank(K)
    assert 1 <= rank <= n
    assert rank == pytest.approx(erank_by_hand(K64), rel=1e-4)
