"""Research instruments: kernel diagnostics per epoch, callbacks, warm start and a
given initial network."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from skntk import HybridNTKClassifier
from skntk.ntk import empirical_ntk

from .conftest import blobs

SMALL = dict(hidden_layer_sizes=(16,), batch_size=16, random_state=0)


def _network(params):
    return [(np.asarray(W), np.asarray(b)) for W, b in params]


def _host_kernel(params, X):
    return np.asarray(empirical_ntk(_network(params), X.astype(np.float32)), np.float64)


def _cosine_distance(A, B):
    return 1 - np.sum(A * B) / (np.linalg.norm(A) * np.linalg.norm(B))


def _centred_alignment(K, Y):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    Kc, Tc = H @ K @ H, H @ (Y @ Y.T) @ H
    return np.sum(Kc * Tc) / (np.linalg.norm(Kc) * np.linalg.norm(Tc))


def test_kernel_diagnostics_against_a_direct_computation():
    X, y = blobs(n_samples=100, n_features=5, n_classes=3, seed=5)
    seen = {}

    def keep_params(info):
        seen[info.epoch] = [(W.copy(), b.copy()) for W, b in info.params]

    clf = HybridNTKClassifier(max_sgd_epochs=5, switch=None, ntk_phase=None,
                              kernel_diagnostics=True, switch_window=2, ntk_monitor_size=30,
                              validation_fraction=None, callbacks=keep_params,
                              **SMALL).fit(X, y)
    h = clf.history_
    X_m = X[clf.monitor_indices_]
    Y_m = np.eye(3)[y[clf.monitor_indices_]]
    K0 = _host_kernel(list(zip(clf.init_coefs_, clf.init_intercepts_)), X_m)
    assert set(seen) == {1, 2, 3, 4, 5}
    for epoch in (2, 5):
        K = _host_kernel(seen[epoch], X_m)
        K_back = _host_kernel(seen[epoch - 2], X_m) if epoch > 2 else K0
        row = epoch - 1
        np.testing.assert_allclose(h["kernel_distance_from_init"][row], _cosine_distance(K, K0),
                                   rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose(h["kernel_velocity"][row], _cosine_distance(K, K_back),
                                   rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose(h["kernel_alignment"][row], _centred_alignment(K, Y_m),
                                   rtol=1e-4)
        eigenvalues = np.linalg.eigvalsh(K)[::-1]
        np.testing.assert_allclose(h["kernel_top_eigenvalues"][row], eigenvalues[:5], rtol=1e-4)
        p = np.clip(eigenvalues, 0, None) / np.clip(eigenvalues, 0, None).sum()
        p = p[p > 0]
        np.testing.assert_allclose(h["kernel_effective_rank"][row],
                                   np.exp(-np.sum(p * np.log(p))), rtol=1e-4)
    # The velocity needs k epochs of history.
    assert np.isnan(h["kernel_velocity"][0])
    # The final network is the one the last callback saw.
    np.testing.assert_array_equal(clf.coefs_[0], seen[5][0][0])


def test_no_kernel_diagnostics_by_default_and_nan_in_the_ntk_phase():
    X, y = blobs(n_samples=80, n_features=4, n_classes=2, seed=6)
    plain = HybridNTKClassifier(max_sgd_epochs=3, switch="fixed_epoch", switch_epoch=3,
                                ntk_epochs=2, **SMALL).fit(X, y)
    assert np.all(np.isnan(plain.history_["kernel_alignment"]))
    assert plain.history_["kernel_top_eigenvalues"].shape == (5, 5)
    diag = clone(plain).set_params(kernel_diagnostics=True).fit(X, y)
    sgd = diag.history_["phase"] == "sgd"
    assert np.all(np.isfinite(diag.history_["kernel_alignment"][sgd]))
    assert np.all(np.isnan(diag.history_["kernel_alignment"][~sgd]))
    # Diagnostics observe: the training itself is unchanged.
    np.testing.assert_allclose(diag.history_["train_loss"], plain.history_["train_loss"],
                               rtol=1e-6)


def test_a_callback_ends_the_sgd_phase_and_then_the_ntk_phase():
    X, y = blobs(n_samples=90, n_features=4, n_classes=3, seed=7)
    calls = []

    def stop_at_4_and_6(info):
        calls.append((info.epoch, info.phase, info.history["train_loss"]))
        return info.epoch in (4, 6)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # no "criterion did not hold"
        clf = HybridNTKClassifier(max_sgd_epochs=20, ntk_epochs=10, ntk_solver="gd",
                                  ntk_learning_rate=0.1, callbacks=[stop_at_4_and_6],
                                  **SMALL).fit(X, y)
    assert clf.switch_epoch_ == 4 and not clf.switch_reached_
    assert clf.n_iter_ == 6 and clf.ntk_stop_reason_ == "callback"
    assert clf.ntk_best_epoch_ == 2  # the state the callback saw
    assert [c[:2] for c in calls] == [(1, "sgd"), (2, "sgd"), (3, "sgd"), (4, "sgd"),
                                      (5, "ntk"), (6, "ntk")]
    np.testing.assert_allclose([c[2] for c in calls], clf.history_["train_loss"])


def test_the_callback_view_is_read_only():
    X, y = blobs(n_samples=60, n_features=4, n_classes=2, seed=8)
    errors = []

    def set_weight(info):
        info.params[0][0][0, 0] = 1.0

    def set_loss(info):
        info.history["train_loss"] = 0.0

    def try_to_write(info):
        for attempt in (set_weight, set_loss):
            try:
                attempt(info)
            except (ValueError, TypeError) as error:
                errors.append(type(error))

    HybridNTKClassifier(max_sgd_epochs=2, switch=None, ntk_phase=None,
                        callbacks=try_to_write, **SMALL).fit(X, y)
    assert errors == [ValueError, TypeError] * 2


def record_epoch(info):  # module level: picklable
    return False


def test_callbacks_survive_clone_and_pickle():
    clf = HybridNTKClassifier(callbacks=[record_epoch], **SMALL)
    assert clone(clf).callbacks == [record_epoch]
    X, y = blobs(n_samples=60, n_features=4, n_classes=2, seed=9)
    clf.set_params(max_sgd_epochs=2, switch=None, ntk_phase=None).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))


def test_coef_init_equal_to_the_draw_reproduces_the_fit_exactly():
    X, y = blobs(n_samples=90, n_features=4, n_classes=3, seed=10)
    kw = dict(max_sgd_epochs=4, switch="fixed_epoch", switch_epoch=4, ntk_epochs=2, **SMALL)
    fresh = HybridNTKClassifier(**kw).fit(X, y)
    coefs = [W.copy() for W in fresh.init_coefs_]
    given = HybridNTKClassifier(**kw).fit(X, y, coef_init=coefs,
                                          intercept_init=fresh.init_intercepts_)
    for a, b in zip(given.coefs_ + given.intercepts_, fresh.coefs_ + fresh.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(coefs[0], fresh.init_coefs_[0])  # input not modified


def test_parent_child_children_start_from_the_parent():
    X, y = blobs(n_samples=90, n_features=4, n_classes=3, seed=11)
    parent = HybridNTKClassifier(max_sgd_epochs=3, switch=None, ntk_phase=None,
                                 validation_fraction=None, **SMALL).fit(X, y)
    children = [HybridNTKClassifier(max_sgd_epochs=3, switch=None, ntk_phase=None,
                                    validation_fraction=None, hidden_layer_sizes=(16,),
                                    batch_size=16, random_state=seed)
                .fit(X, y, coef_init=parent.coefs_, intercept_init=parent.intercepts_)
                for seed in (1, 2)]
    for child in children:
        np.testing.assert_array_equal(child.init_coefs_[0], parent.coefs_[0])
    # Different SGD orders from the same start: the children differ.
    assert not np.allclose(children[0].coefs_[0], children[1].coefs_[0])


def test_warm_start_continues_from_the_fitted_network():
    X, y = blobs(n_samples=80, n_features=4, n_classes=2, seed=12)
    clf = HybridNTKClassifier(max_sgd_epochs=3, switch=None, ntk_phase=None,
                              warm_start=True, **SMALL).fit(X, y)
    first = [W.copy() for W in clf.coefs_]
    clf.fit(X, y)
    np.testing.assert_array_equal(clf.init_coefs_[0], first[0])
    refit_coefs = [W.copy() for W in clf.coefs_]
    refit_proba = clf.predict_proba(X)
    cold = HybridNTKClassifier(max_sgd_epochs=3, switch=None, ntk_phase=None,
                               **SMALL).fit(X, y)
    np.testing.assert_array_equal(cold.init_coefs_[0],
                                  HybridNTKClassifier(max_sgd_epochs=3, switch=None,
                                                      ntk_phase=None, **SMALL)
                                  .fit(X, y).init_coefs_[0])
    with pytest.raises(ValueError, match="warm_start=True continues the fitted network"):
        clf.fit(X, np.where(y == 0, 5, 7))
    # Refused before training, as MLPClassifier: the fitted model stays as it was.
    np.testing.assert_array_equal(clf.coefs_[0], refit_coefs[0])
    np.testing.assert_array_equal(clf.predict_proba(X), refit_proba)
    with pytest.raises(ValueError, match="hidden_layer_sizes` of the fitted network"):
        clf.set_params(hidden_layer_sizes=(5,)).fit(X, y)
    assert clf.coefs_[0].shape == refit_coefs[0].shape
    np.testing.assert_array_equal(clf.predict_proba(X), refit_proba)


@pytest.mark.parametrize("coef_init, intercept_init, match", [
    ([np.zeros((4, 16))], [np.zeros(16), np.zeros(2)], "weight shapes"),
    ([np.zeros((4, 16)), np.zeros((16, 3))], [np.zeros(16), np.zeros(3)], "layer sizes"),
    ([np.full((4, 16), np.nan), np.zeros((16, 2))], [np.zeros(16), np.zeros(2)], "NaN"),
    ([np.zeros((4, 16)), np.zeros((16, 2))], None, "Pass both"),
])
def test_a_wrong_initial_network_is_refused_with_the_fix(coef_init, intercept_init, match):
    X, y = blobs(n_samples=40, n_features=4, n_classes=2, seed=13)
    clf = HybridNTKClassifier(max_sgd_epochs=1, **SMALL)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y, coef_init=coef_init, intercept_init=intercept_init)
    assert not hasattr(clf, "coefs_")


def test_a_refused_initial_network_clears_the_previous_fit():
    X, y = blobs(n_samples=40, n_features=4, n_classes=2, seed=14)
    clf = HybridNTKClassifier(max_sgd_epochs=1, switch=None, ntk_phase=None, **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="Pass both"):
        clf.fit(X, y, coef_init=clf.coefs_)
    assert not hasattr(clf, "coefs_")


def test_a_single_array_as_coef_init_and_a_bad_callback_item_are_named():
    X, y = blobs(n_samples=40, n_features=4, n_classes=2, seed=15)
    clf = HybridNTKClassifier(hidden_layer_sizes=(), max_sgd_epochs=1, random_state=0)
    with pytest.raises(ValueError, match=r"lists with one array per layer.*\[W\] and \[b\]"):
        clf.fit(X, y, coef_init=np.zeros((4, 2)), intercept_init=np.zeros(2))
    with pytest.raises(ValueError, match="item 1 is None"):
        clf.set_params(callbacks=[record_epoch, None]).fit(X, y)
