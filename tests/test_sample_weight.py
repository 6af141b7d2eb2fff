"""Sample and class weights: every phase on weighted rows against repeated and removed
rows, the canonical form of the training rows, class weights and metadata routing."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import cross_validate

from skntk import HybridNTKClassifier, HybridNTKRegressor
from skntk._losses import CROSS_ENTROPY, SQUARED_ERROR
from skntk._mlp import params_to_jax
from skntk._parameterization import init_params
from skntk._phase_api import PhaseSettings
from skntk._phases import NTK_PHASES
from skntk._sgd import sgd_epoch
from skntk._weights import canonical_rows

TINY = dict(hidden_layer_sizes=(8,), max_sgd_epochs=4, ntk_epochs=3, random_state=0)


def _data(n=24, d=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    weights = rng.randint(0, 4, size=n)
    weights[:2] = (0, 3)  # at least one removed and one repeated row
    return X, y, weights


def _fit(estimator, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(*args, **kwargs)


# ------------------------------------------------------- phases on weighted rows

def _phase_problem(loss, n=10, d=3, C=2, seed=1):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (np.eye(C, dtype=np.float32)[rng.randint(C, size=n)] if loss is CROSS_ENTROPY
         else rng.normal(size=(n, C)).astype(np.float32))
    weights = rng.randint(1, 4, size=n)
    params = params_to_jax(init_params((d, 6, C), rng, "standard", np.float32))
    repeated = np.repeat(np.arange(n), weights)
    return params, X, Y, weights, repeated, rng.normal(size=(5, d)).astype(np.float32)


@pytest.mark.parametrize("loss", [CROSS_ENTROPY, SQUARED_ERROR], ids=lambda l: l.name)
def test_full_batch_sgd_epoch_on_integer_weights_equals_repeated_rows(loss):
    params, X, Y, w, rep, _ = _phase_problem(loss)
    n, n_rep = X.shape[0], rep.size
    got = sgd_epoch(params, jnp.asarray(X), jnp.asarray(Y), np.arange(n, dtype=np.int32), n,
                    0.3, n, loss=loss, weights=jnp.asarray(w, jnp.float32))
    want = sgd_epoch(params, jnp.asarray(X[rep]), jnp.asarray(Y[rep]),
                     np.arange(n_rep, dtype=np.int32), n_rep, 0.3, n_rep, loss=loss)
    for a, b in zip(np.concatenate([np.ravel(p) for layer in got for p in layer]),
                    np.concatenate([np.ravel(p) for layer in want for p in layer])):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("phase_name, solver, kernel_solver, epochs", [
    ("linearized", "gd", None, 3),
    ("linearized", "lbfgs", None, 3),
    ("frozen_jacobian", "gd", None, 3),
    ("kernel", None, "dense", 3),
    ("kernel", None, "dense", np.inf),
    ("kernel", None, "matrix_free", 3),
    ("kernel", None, "matrix_free", np.inf),
])
@pytest.mark.parametrize("loss", [CROSS_ENTROPY, SQUARED_ERROR], ids=lambda l: l.name)
def test_ntk_phase_on_integer_weights_equals_repeated_rows(phase_name, solver, kernel_solver,
                                                           epochs, loss):
    # The phases themselves, without the merging of repeated rows that fit does: the
    # weighted objective on n rows against the plain one on the repeated rows.
    params, X, Y, w, rep, X_test = _phase_problem(loss)
    phase = NTK_PHASES[phase_name].variant(solver, kernel_solver)
    settings = PhaseSettings(0.5, epochs, ridge=1e-2, ntk_ridge=1e-3, loss=loss,
                             kernel_solver=kernel_solver, kernel_tol=1e-7,
                             kernel_max_iter=1000)
    weighted = phase.start(params, jnp.asarray(X), jnp.asarray(Y), settings,
                           weights=jnp.asarray(w, jnp.float32))
    repeated = phase.start(params, jnp.asarray(X[rep]), jnp.asarray(Y[rep]), settings)
    for epoch in phase.epochs(settings):
        weighted = phase.step(weighted, epoch, settings)
        repeated = phase.step(repeated, epoch, settings)
    got = np.asarray(phase.outputs(weighted, jnp.asarray(X_test)))
    want = np.asarray(phase.outputs(repeated, jnp.asarray(X_test)))
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)
    # and the training outputs of the phase differ from the unweighted ones
    plain = phase.start(params, jnp.asarray(X), jnp.asarray(Y), settings)
    for epoch in phase.epochs(settings):
        plain = phase.step(plain, epoch, settings)
    assert np.abs(np.asarray(phase.outputs(plain, jnp.asarray(X_test))) - want).max() > 1e-3


def test_kernel_variance_on_integer_weights_equals_repeated_rows():
    X, _, w = _data()
    w = np.maximum(w, 1)
    y = X[:, 0] - X[:, 1] ** 2
    params = dict(TINY, ntk_phase="kernel", ntk_epochs=np.inf, kernel_ridge=1e-2,
                  switch=None, validation_fraction=None, max_sgd_epochs=2, learning_rate=0.05)
    weighted = _fit(HybridNTKRegressor(**params), X, y, sample_weight=w)
    # Rows apart by a rounding error are distinct rows: no merging, the kernel phase
    # itself weighs the repeated ones.
    rep = np.repeat(np.arange(len(y)), w)
    jitter = 1e-7 * np.random.RandomState(0).normal(size=(rep.size, X.shape[1]))
    repeated = _fit(HybridNTKRegressor(**params), X[rep] + jitter, y[rep])
    X_test = np.random.RandomState(1).normal(size=(6, X.shape[1]))
    np.testing.assert_allclose(weighted.predict(X_test), repeated.predict(X_test), rtol=1e-2,
                               atol=1e-2)
    np.testing.assert_allclose(weighted.predict_variance(X_test),
                               repeated.predict_variance(X_test), rtol=2e-2, atol=1e-4)


# ----------------------------------------------------------------- whole fits

@pytest.mark.parametrize("params", [
    dict(),
    dict(ntk_phase="kernel", switch="fixed_epoch", switch_epoch=2),
    dict(ntk_phase="kernel", kernel_solver="matrix_free", ntk_epochs=np.inf, kernel_ridge=1.0),
    dict(ntk_phase=None, batch_size=5, solver="adam", learning_rate=0.01),
])
@pytest.mark.parametrize("Estimator", [HybridNTKClassifier, HybridNTKRegressor])
def test_fit_with_weights_equals_fits_on_repeated_and_removed_rows(Estimator, params):
    X, y, w = _data()
    target = y if Estimator is HybridNTKClassifier else X[:, 0] - X[:, 2]
    params = {**TINY, **params}
    predict = (lambda e: e.decision_function(X)) if Estimator is HybridNTKClassifier \
        else (lambda e: e.predict(X))
    fitted = _fit(Estimator(**params), X, target, sample_weight=w)
    weighted = predict(fitted)
    repeated = predict(_fit(Estimator(**params), X.repeat(w, axis=0),
                            target.repeat(w)))
    np.testing.assert_array_equal(weighted, repeated)
    keep = w > 0
    removed = predict(_fit(Estimator(**params), X[keep], target[keep]))
    zeroed = predict(_fit(Estimator(**params), X, target,
                          sample_weight=keep.astype(float)))
    np.testing.assert_array_equal(zeroed, removed)
    # The monitor subset is reported in rows of the X that was passed.
    assert np.all(w[fitted.monitor_indices_] > 0)


def test_canonical_rows_merges_repeats_and_drops_zero_weights():
    X = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [-0.0, 1.0], [5.0, 5.0]])
    y = np.array([0, 1, 0, 1, 1])
    rows, weights = canonical_rows(X, y, np.array([1.0, 2.0, 0.5, 1.0, 0.0]))
    assert sorted(zip(rows.tolist(), weights.tolist())) == [(0, 1.5), (1, 3.0)]
    rows, weights = canonical_rows(X[:2], y[:2], None)
    assert rows.tolist() == [0, 1] and weights is None  # distinct rows, unit weights: as given
    # another target is another row: distinct rows, kept as given
    rows, weights = canonical_rows(X[:3], np.array([0, 1, 1]), None)
    assert rows.tolist() == [0, 1, 2] and weights is None
    # repeated rows without weights are merged, in the canonical order
    rows, weights = canonical_rows(X[:4], y[:4], None)
    assert sorted(zip(rows.tolist(), weights.tolist())) == [(0, 2.0), (1, 2.0)]


def test_weights_follow_rows_into_the_validation_split_and_normalize_y():
    X, _, w = _data(n=60)
    w = np.where(w > 0, w, 1).astype(float)
    y = X[:, 0] * 10 + 3
    plain = _fit(HybridNTKRegressor(**TINY, validation_fraction=None), X, y)
    weighted = _fit(HybridNTKRegressor(**TINY, validation_fraction=None), X, y,
                    sample_weight=w)
    assert plain.y_mean_[0] == pytest.approx(y.mean())
    assert weighted.y_mean_[0] == pytest.approx(np.average(y, weights=w))
    assert weighted.y_scale_[0] == pytest.approx(
        np.sqrt(np.average((y - np.average(y, weights=w)) ** 2, weights=w)))
    # A validation split: the same rows and weights as the split of the repeated rows,
    # so the validation scores recorded are those of the repeated data.
    rep = np.repeat(np.arange(60), w.astype(int))
    split = dict(TINY, validation_fraction=0.25)
    by_weight = _fit(HybridNTKRegressor(**split), X, y, sample_weight=w)
    by_repeat = _fit(HybridNTKRegressor(**split), X[rep], y[rep])
    np.testing.assert_array_equal(by_weight.history_["val_r2"], by_repeat.history_["val_r2"])
    unweighted = _fit(HybridNTKRegressor(**split), X, y)
    assert not np.array_equal(by_weight.history_["val_r2"], unweighted.history_["val_r2"])


@pytest.mark.parametrize("bad, match", [
    (-np.ones(24), "Negative"),
    (np.zeros(24), "zero"),
    (np.ones(23), "shape|samples"),
    (np.full(24, np.nan), "NaN|inf|finite"),
])
def test_invalid_sample_weight_is_refused_and_not_modified(bad, match):
    X, y, _ = _data()
    clf = HybridNTKClassifier(**TINY)
    copy = bad.copy()
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y, sample_weight=bad)
    np.testing.assert_array_equal(bad, copy)
    assert not hasattr(clf, "coefs_")


def test_zero_weights_removing_a_class_leave_too_few_classes():
    X, y, _ = _data()
    with pytest.raises(ValueError, match="at least 2 classes.*positive sample weight"):
        HybridNTKClassifier(**TINY).fit(X, y, sample_weight=(y == 1).astype(float))


# -------------------------------------------------------------- class weights

def test_balanced_class_weight_raises_balanced_accuracy_on_95_to_5_data():
    rng = np.random.RandomState(0)
    n_major, n_minor = 380, 20
    X = np.vstack([rng.normal(0.0, 1.0, size=(n_major, 2)),
                   rng.normal(1.5, 1.0, size=(n_minor, 2))])
    y = np.r_[np.zeros(n_major, int), np.ones(n_minor, int)]
    X_test = np.vstack([rng.normal(0.0, 1.0, size=(500, 2)), rng.normal(1.5, 1.0, size=(500, 2))])
    y_test = np.r_[np.zeros(500, int), np.ones(500, int)]
    params = dict(hidden_layer_sizes=(16,), max_sgd_epochs=10, ntk_epochs=10, random_state=0,
                  validation_fraction=None)
    plain = _fit(HybridNTKClassifier(**params), X, y)
    balanced = _fit(HybridNTKClassifier(**params, class_weight="balanced"), X, y)
    score_plain = balanced_accuracy_score(y_test, plain.predict(X_test))
    score_balanced = balanced_accuracy_score(y_test, balanced.predict(X_test))
    assert score_balanced > score_plain + 0.1, (score_plain, score_balanced)


def test_class_weight_dict_equals_the_same_sample_weights():
    X, y, _ = _data()
    by_class = _fit(HybridNTKClassifier(**TINY, class_weight={0: 1.0, 1: 3.0}), X, y)
    by_sample = _fit(HybridNTKClassifier(**TINY), X, y, sample_weight=np.where(y == 1, 3, 1))
    np.testing.assert_array_equal(by_class.predict_proba(X), by_sample.predict_proba(X))


# ----------------------------------------------------------- metadata routing

def test_sample_weight_is_routed_by_cross_validate():
    X, y, w = _data(n=40)
    w = np.maximum(w, 1).astype(float)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = HybridNTKClassifier(**TINY).set_fit_request(sample_weight=True)
        clf.set_score_request(sample_weight=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            routed = cross_validate(clf, X, y, cv=2, params={"sample_weight": w},
                                    return_estimator=True, return_indices=True)
    train = routed["indices"]["train"][0]
    by_hand = _fit(HybridNTKClassifier(**TINY), X[train], y[train], sample_weight=w[train])
    unweighted = _fit(HybridNTKClassifier(**TINY), X[train], y[train])
    got = routed["estimator"][0].predict_proba(X)
    np.testing.assert_array_equal(got, by_hand.predict_proba(X))
    assert not np.array_equal(got, unweighted.predict_proba(X))
