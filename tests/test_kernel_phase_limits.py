"""Limits of the kernel phase checked before training: the memory its predictions need."""

import numpy as np
import pytest

from skntk import HybridNTKClassifier
from skntk._kernel_budget import check_prediction_budget, prediction_bytes

from .conftest import blobs


def test_prediction_memory_is_the_moments_and_one_block_in_float64():
    # (4, 64, 64, 3): factor pairs (5, 3·64), (65, 64), (65, 1) narrower first.
    sizes = (4, 64, 64, 3)
    widths = [(5, 192), (64, 65), (1, 65)]
    C, block = 3, 30
    expected = 8 * (C * sum(a * f for a, f in widths)
                    + 3 * block * sum(C * a + f for a, f in widths))
    assert prediction_bytes(sizes, 30) == expected
    assert check_prediction_budget(sizes, 30, expected) == expected
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        check_prediction_budget(sizes, 30, expected - 1)


@pytest.mark.parametrize("solver", ["auto", "dense", "matrix_free"])
def test_kernel_phase_refuses_predictions_over_the_budget_before_training(solver):
    X, y = blobs(n_samples=30, n_features=4, n_classes=3, seed=3)
    epochs = []
    budget = prediction_bytes((4, 64, 64, 3), 30) - 1
    # The dense kernels of 30 rows need far less than the budget.
    clf = HybridNTKClassifier(hidden_layer_sizes=(64, 64), ntk_phase="kernel",
                              kernel_solver=solver, max_kernel_bytes=budget,
                              validation_fraction=None, random_state=0,
                              callbacks=lambda info: epochs.append(info))
    with pytest.raises(ValueError, match=r"predictions.*max_kernel_bytes.*hidden_layer_sizes"):
        clf.fit(X, y)
    assert epochs == []  # refused before the first epoch
    assert not hasattr(clf, "coefs_")
