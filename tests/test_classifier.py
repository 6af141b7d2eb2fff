"""End-to-end behaviour of HybridNTKClassifier."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skntk import HybridNTKClassifier

from .conftest import blobs

FAST = dict(hidden_layer_sizes=(16,), max_sgd_epochs=6, ntk_epochs=4, random_state=0)


def test_same_random_state_gives_identical_histories_and_probabilities(digits_small):
    X, y = digits_small
    fits = [HybridNTKClassifier(**FAST, switch="ntk_norm", switch_threshold=0.0).fit(X, y)
            for _ in range(2)]
    for key, value in fits[0].history_.items():
        if key != "elapsed_s":
            np.testing.assert_array_equal(value, fits[1].history_[key])
    np.testing.assert_array_equal(fits[0].predict_proba(X), fits[1].predict_proba(X))


def test_history_has_one_row_per_epoch_of_both_phases(digits_small):
    X, y = digits_small
    clf = HybridNTKClassifier(**{**FAST, "ntk_epochs": 3}, switch="fixed_epoch", switch_epoch=4)
    clf.fit(X, y)
    h = clf.history_
    assert clf.switch_epoch_ == 4 and clf.switch_reached_
    np.testing.assert_array_equal(h["epoch"], np.arange(1, 8))
    np.testing.assert_array_equal(h["phase"], ["sgd"] * 4 + ["ntk"] * 3)
    assert np.all(np.isfinite(h["val_loss"])) and np.all(np.diff(h["elapsed_s"]) >= 0)
    assert clf.n_iter_ == 7 and clf.loss_curve_ == list(h["train_loss"])
    # the frozen-Jacobian phase keeps lowering the training loss at a small step
    assert h["train_loss"][-1] < h["train_loss"][3]


def test_scouting_run_records_statistic_without_warning(digits_small):
    X, y = digits_small
    clf = HybridNTKClassifier(**FAST, switch="param_norm", switch_window=2, switch_threshold=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    stat = clf.history_["switch_statistic"]
    assert not clf.switch_reached_ and clf.switch_epoch_ == 6
    assert np.isnan(stat[0]) and np.all(stat[1:6] > 0) and np.isnan(stat[6:]).all()
    # A positive threshold that never holds is reported.
    with pytest.warns(ConvergenceWarning, match="did not hold.*the NTK phase starts"):
        clf.set_params(switch_threshold=1e-9).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="did not hold.*training ends with the last"):
        clf.set_params(ntk_phase=None).fit(X, y)


def test_switch_statistic_of_fitted_param_norm_matches_final_parameters(digits_small):
    X, y = digits_small
    base = dict(FAST, switch="param_norm", switch_window=1, switch_threshold=0.0, ntk_phase=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = HybridNTKClassifier(**base).fit(X, y)
        shorter = HybridNTKClassifier(**{**base, "max_sgd_epochs": 5}).fit(X, y)
    diff = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in
                       zip(full.coefs_ + full.intercepts_, shorter.coefs_ + shorter.intercepts_)))
    np.testing.assert_allclose(full.history_["switch_statistic"][-1], diff, rtol=1e-4)


@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog", "emu"]), np.array([-3, 7, 11]), np.array([True, False, True])])
def test_any_label_type_round_trips(labels):
    X, y_index = blobs(n_samples=45, n_classes=3)
    y = labels[y_index]
    clf = HybridNTKClassifier(**FAST).fit(X, y)
    pred = clf.predict(X)
    assert pred.dtype == y.dtype and set(pred) <= set(y)
    assert clf.score(X, y) > 0.9


def test_explicit_validation_set_and_fraction(digits_small):
    X, y = digits_small
    clf = HybridNTKClassifier(**FAST, validation_fraction=None).fit(X[:400], y[:400], X[400:], y[400:])
    final_val = clf.history_["val_accuracy"][-1]
    np.testing.assert_allclose(final_val, clf.score(X[400:], y[400:]), atol=1e-6)
    no_val = HybridNTKClassifier(**FAST, validation_fraction=None).fit(X, y)
    assert np.isnan(no_val.history_["val_loss"]).all()


def test_pickle_and_clone(digits_small):
    X, y = digits_small
    clf = HybridNTKClassifier(**FAST, ntk_phase="kernel").fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert not hasattr(clone(clf), "coefs_")


def test_ntk_epochs_inf_only_for_kernel_phase():
    X, y = blobs()
    with pytest.raises(ValueError, match="ntk_epochs=inf"):
        HybridNTKClassifier(**{**FAST, "ntk_epochs": np.inf}).fit(X, y)


def _grid(n_jobs, X, y):
    pipe = Pipeline([("scale", StandardScaler()),
                     ("clf", HybridNTKClassifier(hidden_layer_sizes=(16,), max_sgd_epochs=8,
                                                 ntk_epochs=5, random_state=0))])
    grid = {"clf__switch_threshold": [0.0, 0.3], "clf__ntk_learning_rate": [0.1, 1.0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GridSearchCV(pipe, grid, cv=2, n_jobs=n_jobs).fit(X, y)


def test_grid_search_in_pipeline_parallel_equals_serial(digits_small):
    X, y = digits_small
    serial, parallel = _grid(1, X, y), _grid(2, X, y)
    assert serial.best_params_ == parallel.best_params_
    np.testing.assert_allclose(serial.cv_results_["mean_test_score"],
                               parallel.cv_results_["mean_test_score"])
    assert serial.best_score_ > 0.6


def test_a_phase_that_raises_the_loss_warns(digits_small):
    X, y = digits_small
    with pytest.warns(ConvergenceWarning, match=r"SGD phase raised the training loss.*learning_rate"):
        HybridNTKClassifier(**{**FAST, "ntk_epochs": 0}, learning_rate=30.0, switch=None,
                            batch_size=500).fit(X * 10, y)
    with pytest.warns(ConvergenceWarning, match=r"NTK phase raised.*ntk_learning_rate"):
        HybridNTKClassifier(**FAST, switch=None, ntk_phase="frozen_jacobian",
                            ntk_learning_rate=1000.0).fit(X, y)
