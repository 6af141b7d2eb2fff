"""Limits of the kernel phase checked before training: the memory its predictions need."""

import warnings

import numpy as np
import pytest

from skntk import HybridNTKClassifier
from skntk._kernel_budget import prediction_block

from .conftest import blobs


def test_prediction_blocks_fit_the_moments_and_their_rows_in_the_budget():
    # (4, 64, 64, 3): factor pairs (5, 3·64), (64, 65), (1, 65), narrower first.
    sizes = (4, 64, 64, 3)
    widths = [(5, 192), (64, 65), (1, 65)]
    C = 3
    moments = 8 * C * sum(a * f for a, f in widths)
    per_row = 8 * 3 * sum(C * a + f for a, f in widths)
    assert prediction_block(sizes, 30, None) == 30
    assert prediction_block(sizes, 5000, None) == 2048
    assert prediction_block(sizes, 30, moments + 7 * per_row + 1) == 7
    assert prediction_block(sizes, 30, moments + per_row) == 1
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        prediction_block(sizes, 30, moments + per_row - 1)


@pytest.mark.parametrize("solver", ["auto", "dense", "matrix_free"])
def test_kernel_phase_refuses_predictions_over_the_budget_before_training(solver):
    X, y = blobs(n_samples=30, n_features=4, n_classes=3, seed=3)
    epochs = []
    sizes = (4, 64, 64, 3)
    widths = [(5, 192), (64, 65), (1, 65)]
    # The moments alone, without a row: the dense kernels of 30 rows need far less.
    budget = 8 * 3 * sum(a * f for a, f in widths)
    clf = HybridNTKClassifier(hidden_layer_sizes=sizes[1:-1], ntk_phase="kernel",
                              kernel_solver=solver, max_kernel_bytes=budget,
                              validation_fraction=None, random_state=0,
                              callbacks=lambda info: epochs.append(info))
    with pytest.raises(ValueError, match=r"predictions.*max_kernel_bytes.*hidden_layer_sizes"):
        clf.fit(X, y)
    assert epochs == []  # refused before the first epoch
    assert not hasattr(clf, "coefs_")


def test_predictions_in_small_blocks_equal_those_in_one():
    X, y = blobs(n_samples=30, n_features=4, n_classes=3, seed=3)
    kw = dict(hidden_layer_sizes=(8,), ntk_phase="kernel", kernel_solver="dense",
              max_sgd_epochs=2, switch=None, validation_fraction=None, random_state=0)
    sizes = (4, 8, 3)
    moments = 8 * 3 * sum(a * f for a, f in [(5, 8), (1, 9)])
    per_row = 8 * 3 * sum(3 * a + f for a, f in [(5, 8), (1, 9)])
    clf = HybridNTKClassifier(**kw).fit(X, y)
    one_block = clf.decision_function(X)
    clf.max_kernel_bytes_ = moments + 4 * per_row  # as if fitted with that budget
    assert prediction_block(sizes, 30, clf.max_kernel_bytes_) == 4
    # Other block shapes round the float32 factors differently, nothing more.
    np.testing.assert_allclose(clf.decision_function(X), one_block, rtol=0,
                               atol=1e-5 * np.abs(one_block).max())


def test_matrix_free_kernel_phase_fits_inputs_of_1e12_as_the_dense_one():
    # Unstandardised inputs of order 1e12: kernel entries of order 1e24, whose float32
    # round-off sets the floor under which conjugate gradients cannot resolve the
    # spectrum (without a ridge at that floor they diverged: accuracy 0.33).
    X, y = blobs(n_samples=120, n_features=4, seed=0)
    X = X * 1e12
    kw = dict(hidden_layer_sizes=(16,), max_sgd_epochs=1, learning_rate=1e-30,
              ntk_phase="kernel", validation_fraction=None, random_state=0)
    fits = {}
    for solver in ("dense", "matrix_free"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[solver] = HybridNTKClassifier(kernel_solver=solver, **kw).fit(X, y)
    matrix_free = fits["matrix_free"]
    assert matrix_free.history_["train_accuracy"][-1] >= 0.95
    assert matrix_free.score(X, y) == pytest.approx(
        matrix_free.history_["train_accuracy"][-1], abs=1e-6)
    assert np.mean(matrix_free.predict(X) == fits["dense"].predict(X)) >= 0.97
