"""Degenerate inputs to the kernel statistics of skntk.ntk: a documented value or a
clear ValueError, for numpy and (concrete) jax inputs alike."""

import jax.numpy as jnp
import numpy as np
import pytest

from skntk.ntk import (centered_kernel_alignment, kernel_distance,
                       kernel_target_alignment)

RNG = np.random.default_rng(0)
F = RNG.normal(size=(6, 3))
K = F @ F.T
Y = np.eye(2)[[0, 1, 0, 1, 1, 0]]


def test_kernel_target_alignment_value():
    expected = np.sum(K * (Y @ Y.T)) / (np.linalg.norm(K) * np.linalg.norm(Y @ Y.T))
    assert kernel_target_alignment(K, Y) == pytest.approx(expected, rel=1e-12)
    assert kernel_target_alignment(K, np.argmax(Y, axis=1)) == pytest.approx(expected,
                                                                             rel=1e-12)


@pytest.mark.parametrize("xp", [np, jnp])
@pytest.mark.parametrize("kernel, targets, match", [
    (np.zeros((6, 6)), Y, "`K` is all zeros"),
    (K, np.zeros((6, 2)), "`Y` is all zeros"),
    (np.where(np.eye(6) > 0, np.nan, K), Y, "`K` contains NaN"),
    (K, np.where(Y > 0, np.inf, Y), "`Y` contains NaN"),
])
def test_kernel_target_alignment_refuses_undefined_inputs(xp, kernel, targets, match):
    with np.errstate(all="raise"):  # no silent NaN with a RuntimeWarning
        with pytest.raises(ValueError, match=match):
            kernel_target_alignment(xp.asarray(kernel, dtype=xp.float32),
                                    xp.asarray(targets, dtype=xp.float32))


def test_integer_kernel_is_aligned_as_float():
    K_int = np.array([[2, 1], [1, 2]])
    assert kernel_target_alignment(K_int, np.array([0, 0])) == pytest.approx(
        6 / (np.sqrt(10) * 2))


def test_the_other_alignment_and_distance_keep_their_documented_behaviour():
    with pytest.raises(ValueError, match="centred kernel"):
        centered_kernel_alignment(np.ones((6, 6)), Y)
    with np.errstate(all="ignore"):
        assert np.isnan(kernel_distance(np.zeros((6, 6)), K))
