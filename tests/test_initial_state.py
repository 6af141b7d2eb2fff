"""Initial state and closed-form outputs: theta_0, the monitor subset, decision_function."""

import numpy as np
import pytest
from scipy.special import softmax as scipy_softmax
from sklearn.metrics import roc_auc_score

from skntk import HybridNTKClassifier
from skntk.ntk import empirical_ntk, kernel_distance

from .conftest import blobs

SMALL = dict(hidden_layer_sizes=(16,), batch_size=16, random_state=0)


def _params(coefs, intercepts):
    return [(np.asarray(W), np.asarray(b)) for W, b in zip(coefs, intercepts)]


def test_init_params_are_the_drawn_theta0_and_the_sgd_start():
    X, y = blobs(n_samples=80, n_features=5, n_classes=3, seed=1)
    clf = HybridNTKClassifier(max_sgd_epochs=0, ntk_phase=None, switch=None,
                              validation_fraction=None, **SMALL).fit(X, y)
    # With no epoch, the final network is theta_0 itself.
    for a, b in zip(clf.init_coefs_ + clf.init_intercepts_, clf.coefs_ + clf.intercepts_):
        np.testing.assert_array_equal(a, b)
    # Glorot-normal weights (variance 2 / (fan_in + fan_out)), zero biases.
    assert [W.shape for W in clf.init_coefs_] == [(5, 16), (16, 3)]
    assert clf.init_coefs_[0].dtype == np.float32
    assert np.var(clf.init_coefs_[0]) == pytest.approx(2 / 21, rel=0.5)
    assert all(np.all(b == 0) for b in clf.init_intercepts_)
    trained = HybridNTKClassifier(max_sgd_epochs=3, ntk_phase=None, switch=None,
                                  validation_fraction=None, **SMALL).fit(X, y)
    np.testing.assert_array_equal(trained.init_coefs_[0], clf.init_coefs_[0])
    assert not np.allclose(trained.coefs_[0], trained.init_coefs_[0])


def test_monitor_indices_reproduce_the_recorded_kernel_statistic():
    """The kernel distance recorded at epoch k equals one recomputed from theta_0, the
    network after k epochs and X[monitor_indices_]: the attributes are what the
    criterion used."""
    X, y = blobs(n_samples=120, n_features=6, n_classes=3, seed=2)
    clf = HybridNTKClassifier(max_sgd_epochs=3, switch="kernel_distance", switch_window=3,
                              switch_threshold=0, ntk_phase=None, ntk_monitor_size=40,
                              validation_fraction=0.2, **SMALL).fit(X, y)
    idx = clf.monitor_indices_
    assert idx.shape == (40,) and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < len(X)
    X_monitor = X[idx].astype(np.float32)
    K0 = empirical_ntk(_params(clf.init_coefs_, clf.init_intercepts_), X_monitor)
    K3 = empirical_ntk(_params(clf.coefs_, clf.intercepts_), X_monitor)
    np.testing.assert_allclose(clf.history_["switch_statistic"][2],
                               float(kernel_distance(np.asarray(K3, np.float64),
                                                     np.asarray(K0, np.float64))),
                               rtol=2e-2, atol=1e-6)


def test_monitor_indices_avoid_the_validation_rows():
    X, y = blobs(n_samples=60, n_features=4, n_classes=2, seed=3)
    clf = HybridNTKClassifier(max_sgd_epochs=1, ntk_phase=None, ntk_monitor_size=1000,
                              validation_fraction=0.25, **SMALL).fit(X, y)
    # m = min(ntk_monitor_size, n_train): every training row, no validation row.
    assert len(clf.monitor_indices_) == 60 - 15
    assert len(np.unique(clf.monitor_indices_)) == 45


@pytest.mark.parametrize("n_classes", [2, 3])
def test_decision_function_gives_the_logits_behind_predict_proba(n_classes):
    X, y = blobs(n_samples=90, n_features=4, n_classes=n_classes, seed=4)
    clf = HybridNTKClassifier(max_sgd_epochs=4, switch="fixed_epoch", switch_epoch=2,
                              ntk_epochs=3, validation_fraction=None, **SMALL).fit(X, y)
    scores = clf.decision_function(X)
    proba = clf.predict_proba(X)
    if n_classes == 2:
        assert scores.shape == (90,)
        # softmax of (0, s) is the probability of classes_[1]
        np.testing.assert_allclose(1 / (1 + np.exp(-scores)), proba[:, 1], rtol=1e-5)
        np.testing.assert_array_equal(clf.classes_[(scores > 0).astype(int)], clf.predict(X))
        assert roc_auc_score(y, scores) == pytest.approx(roc_auc_score(y, proba[:, 1]))
    else:
        assert scores.shape == (90, 3)
        np.testing.assert_allclose(scipy_softmax(scores, axis=1), proba, rtol=1e-5, atol=1e-7)
