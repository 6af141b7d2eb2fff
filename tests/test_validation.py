"""Faulty inputs, numerical failures, budgets and state: the exact outcome of each case.

Networks are tiny and most tests share one data shape (30 x 4, 3 classes) so that the
jitted functions compile once.
"""

import copy
import io
import pickle
import warnings

import jax
import jax.numpy as jnp
import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.utils.validation import check_is_fitted

import skntk._training as training_module
from skntk import HybridNTKClassifier
from skntk._validation import softmax, usable_logits
from skntk._losses import cross_entropy_per_sample
from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk._kernel_budget import (CROSS_KERNEL_COPIES, TRAINING_KERNEL_COPIES, check_kernel,
                                  check_kernel_phase_budget)
from skntk._phases import FrozenJacobianPhase
from skntk._sgd import epoch_order, sgd_epoch
from skntk.ntk import empirical_ntk, ntk_vector_product

from .conftest import blobs

FAST = dict(hidden_layer_sizes=(8,), max_sgd_epochs=3, switch="fixed_epoch", switch_epoch=2,
            ntk_epochs=2, validation_fraction=None, random_state=0)
X30, y30 = blobs(n_samples=30, n_features=4, n_classes=3)


def fast(**params):
    return HybridNTKClassifier(**{**FAST, **params})


def assert_unfitted(clf):
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)
    for name in ("coefs_", "classes_", "history_", "n_features_in_", "feature_names_in_"):
        assert not hasattr(clf, name), name


def assert_valid_proba(proba, n_rows, n_classes):
    assert proba.shape == (n_rows, n_classes) and proba.dtype == np.float64
    assert np.all(np.isfinite(proba)) and proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# ------------------------------------------------------------- tiny and degenerate data

def test_single_class_is_refused_with_its_label():
    with pytest.raises(ValueError, match=r"at least 2 classes; got 1 class \('a'\)"):
        fast().fit(X30[:5], ["a"] * 5)


@pytest.mark.parametrize("y, reason", [
    ([0, 1], "class 0 has a single sample"),
    ([0, 1, 1], "class 0 has a single sample"),
    ([0, 0, 1, 1], "1 held-out sample"),
])
def test_two_to_four_samples_fall_back_to_no_validation_with_a_warning(y, reason):
    X = X30[:len(y)]
    with pytest.warns(UserWarning, match=r"cannot hold out a stratified validation set.*"
                                         + reason):
        clf = fast(validation_fraction=0.1).fit(X, y)
    assert np.isnan(clf.history_["val_loss"]).all()
    assert np.isfinite(clf.history_["train_loss"]).all()
    assert set(clf.predict(X)) <= {0, 1}


def test_four_samples_split_stratified_when_every_class_fits_in_both_parts():
    y = np.array([0, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # Two training samples: the network may sit at the constant predictor's level
        # when the switch comes (a ConvergenceWarning, not the split's warning).
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = fast(validation_fraction=0.5).fit(X30[:4], y)
    # one sample of each class is held out, so validation accuracy is 0, 0.5 or 1
    assert np.isfinite(clf.history_["val_loss"]).all()
    assert set(clf.history_["val_accuracy"]) <= {0.0, 0.5, 1.0}


def test_rare_class_left_out_of_the_validation_part_falls_back():
    y = np.array([0] * 18 + [1] * 2)
    with pytest.warns(UserWarning, match="leaves class 1 out of the validation part"):
        clf = fast(validation_fraction=0.1).fit(X30[:20], y)
    assert np.isnan(clf.history_["val_accuracy"]).all()


def test_batch_size_larger_than_data_equals_full_batch():
    big = fast(batch_size=10_000).fit(X30, y30)
    full = fast(batch_size=30).fit(X30, y30)
    for a, b in zip(big.coefs_ + big.intercepts_, full.coefs_ + full.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_last_batch_of_one_sample_is_a_mean_over_that_sample():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(9, 4)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[np.arange(9) % 3]
    params = params_to_jax(init_mlp_params((4, 8, 3), rng))
    lr = 0.1
    order = epoch_order(np.random.RandomState(3), 9, 9, 4)
    got = sgd_epoch(params, jnp.asarray(X), jnp.asarray(Y), order, 9, lr, 4)
    # by hand: batches of 4, 4 and 1 along the same permutation, each a plain mean
    want = params

    def batch_loss(p, xb, yb):
        return jnp.mean(cross_entropy_per_sample(mlp_forward(p, xb), yb))

    for batch in (order[:4], order[4:8], order[8:9]):
        grads = jax.grad(batch_loss)(want, X[batch], Y[batch])
        want = jax.tree_util.tree_map(lambda p, g: p - lr * g, want, grads)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_minibatches_lacking_classes_keep_all_class_columns():
    # batch_size=1: every mini-batch holds one class out of three
    clf = fast(batch_size=1, learning_rate=0.01).fit(X30, y30)
    assert clf.coefs_[-1].shape == (8, 3) and clf.intercepts_[-1].shape == (3,)
    assert np.isfinite(clf.history_["train_loss"]).all()
    assert_valid_proba(clf.predict_proba(X30), 30, 3)


# ------------------------------------------------------------------------------ labels

@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog", "emu"]),
    np.array(["cat", "dog", "emu"], dtype=object),
    np.array([-7, 3, 1000]),
    np.array([2.0, -1.0, 5.0]),
    np.array([True, False, True]),  # two classes
])
def test_labels_keep_their_values_and_dtype(labels):
    y = labels[y30]
    clf = fast().fit(X30, y)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    assert clf.classes_.dtype == y.dtype
    pred = clf.predict(X30)
    assert pred.dtype == y.dtype and set(pred.tolist()) <= set(y.tolist())
    assert clf.predict_proba(X30).shape == (30, len(np.unique(y)))


def test_column_vector_y_is_raveled_with_a_warning():
    with pytest.warns(DataConversionWarning):
        clf = fast().fit(X30, y30[:, None])
    assert clf.predict(X30).shape == (30,)


@pytest.mark.parametrize("y, error, match", [
    (np.eye(3)[y30], ValueError, r"one label per sample, but `y` has shape \(30, 3\) "
                                 r"\(multilabel-indicator targets\)"),
    (np.c_[y30, y30], ValueError, r"`y` has shape \(30, 2\) \(multiclass-multioutput"),
    (np.linspace(0, 1, 30), ValueError, "Unknown label type: continuous"),
    (np.array([1, "a", 2] * 10, dtype=object), ValueError, "mixes labels of different kinds"),
    (np.array(["a", None, "b"] * 10, dtype=object), ValueError,
     r"missing labels \(None at position 1; 10 of 30 samples\)"),
    (np.where(y30 == 0, np.nan, y30), ValueError,
     r"missing labels \(nan at position 0; 10 of 30 samples\)"),
])
def test_multilabel_continuous_and_mixed_labels_are_refused(y, error, match):
    clf = fast()
    with pytest.raises(error, match=match):
        clf.fit(X30, y)
    assert_unfitted(clf)


MISSING = {"None": None, "NaN": np.nan, "pd.NA": pd.NA, "pd.NaT": pd.NaT}


def _labels_with_missing(missing, container):
    labels = np.array(["a", "b", "c"], dtype=object)[y30]
    labels[3] = missing
    if container == "string Series":  # pandas turns each marker into pd.NA
        return pd.Series(labels, dtype="string")
    return pd.Series(labels, dtype=object) if container == "object Series" else labels


@pytest.mark.parametrize("missing", MISSING.values(), ids=MISSING.keys())
@pytest.mark.parametrize("container", ["object array", "object Series", "string Series"])
def test_missing_labels_in_y_and_y_val_are_refused_alike(missing, container):
    y = _labels_with_missing(missing, container)
    shown = "<NA>" if container == "string Series" else repr(missing)
    kept = y.copy()
    clf = fast()
    with pytest.raises(ValueError, match=(
            rf"^`y` contains missing labels \({shown} at position 3; 1 of 30 samples\)\. "
            rf"Drop those samples or give them a label of their own\.$")):
        clf.fit(X30, y)
    assert_unfitted(clf)
    with pytest.raises(ValueError, match=rf"^`y_val` contains missing labels \({shown} at "
                                         rf"position 3; 1 of 30 samples\)"):
        clf.fit(X30, np.array(["a", "b", "c"])[y30], X30, y)
    assert_unfitted(clf)
    assert list(map(repr, np.asarray(y, dtype=object))) == list(map(repr, np.asarray(kept)))


@pytest.mark.parametrize("y", [
    pd.Series(y30, dtype="Int64").mask(y30 == 1),  # nullable integers: NaN in numpy
    np.where(y30 == 1, np.datetime64("NaT"), np.datetime64("2024-01-01")),
], ids=["Int64", "datetime64"])
def test_missing_labels_in_numeric_and_datetime_y(y):
    with pytest.raises(ValueError, match=r"`y` contains missing labels \((nan|NaT) at "
                                         r"position 1; 10 of 30 samples\)"):
        fast().fit(X30, y)


def test_validation_labels_must_be_known_and_of_the_same_kind():
    y = np.array(["a", "b", "c"])[y30]
    with pytest.raises(ValueError, match=r"`y_val` holds labels not seen in `y`: \['z'\]"):
        fast().fit(X30, y, X30[:3], ["a", "b", "z"])
    with pytest.raises(ValueError, match="`y_val` holds labels of dtype int64"):
        fast().fit(X30, y, X30[:3], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"`y_val` must have shape \(3,\)"):
        fast().fit(X30, y, X30[:3], ["a", "b"])
    with pytest.raises(ValueError, match=r"`y_val` mixes labels of different kinds "
                                         r"\(string 'a', number 1\)"):
        fast().fit(X30, y, X30[:3], np.array(["a", 1, "b"], dtype=object))
    with pytest.raises(ValueError, match="Pass both `X_val` and `y_val`, or neither; got "
                                         "only `X_val`"):
        fast().fit(X30, y, X_val=X30[:3])


# ---------------------------------------------------------------------------- features

@pytest.mark.parametrize("bad, match", [(np.nan, "Input X contains NaN"),
                                        (np.inf, "Input X contains infinity")])
def test_nan_and_inf_are_refused_in_fit_validation_and_predict(bad, match):
    X_bad = X30.copy()
    X_bad[3, 1] = bad
    with pytest.raises(ValueError, match=match):
        fast().fit(X_bad, y30)
    with pytest.raises(ValueError, match=match.replace("X", "X_val")):
        fast().fit(X30, y30, X_bad, y30)
    clf = fast().fit(X30, y30)
    with pytest.raises(ValueError, match=match):
        clf.predict(X_bad)
    with pytest.raises(ValueError, match=match):
        clf.predict_proba(X_bad)


def test_values_beyond_float32_are_refused_by_fit():
    X_big = X30.copy()
    X_big[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"`X` holds values beyond the float32 range.*"
                                         r"1e\+300.*StandardScaler"):
        fast().fit(X_big, y30)
    with pytest.raises(ValueError, match="`X_val` holds values beyond the float32 range"):
        fast().fit(X30, y30, X_big, y30)


def test_inputs_too_large_for_the_network_are_refused_before_training():
    # finite in float32, but the logits at initialisation overflow
    with pytest.raises(ValueError, match="non-finite at initialisation.*Standardise `X`"):
        fast().fit(X30 * 1e37, y30)


def test_wrong_number_of_features():
    clf = fast().fit(X30, y30)
    with pytest.raises(ValueError, match="X has 3 features, but HybridNTKClassifier is "
                                         "expecting 4 features"):
        clf.predict(X30[:, :3])
    with pytest.raises(ValueError, match="`X_val` has 3 features, but `X` has 4"):
        fast().fit(X30, y30, X30[:5, :3], y30[:5])


@pytest.mark.parametrize("sparse", [scipy.sparse.csr_matrix, scipy.sparse.csr_array])
def test_sparse_input_is_refused_with_the_fix(sparse):
    with pytest.raises(TypeError, match=r"does not accept sparse input: `X` is a csr_.*"
                                        r"`X\.toarray\(\)`"):
        fast().fit(sparse(X30), y30)
    with pytest.raises(TypeError, match=r"`X_val\.toarray\(\)`"):
        fast().fit(X30, y30, sparse(X30), y30)
    clf = fast().fit(X30, y30)
    with pytest.raises(TypeError, match=r"`X\.toarray\(\)`"):
        clf.predict_proba(sparse(X30))


def test_dataframe_feature_names_are_kept_and_checked():
    columns = ["a", "b", "c", "d"]
    df = pd.DataFrame(X30, columns=columns)
    df["d"] = np.round(df["d"] * 3).astype(int)  # mixed column dtypes
    clf = fast().fit(df, pd.Series(y30))
    np.testing.assert_array_equal(clf.feature_names_in_, columns)
    np.testing.assert_array_equal(clf.predict(df), clf.predict(df.to_numpy()))
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(df[columns[::-1]])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict(df.to_numpy())
    with pytest.raises(ValueError, match="feature names should match"):
        fast().fit(df, y30, df.rename(columns={"a": "z"}), y30)
    # refitting on an array drops the names
    assert not hasattr(fast().fit(df, y30).fit(X30, y30), "feature_names_in_")


def test_integer_bool_float32_and_float64_inputs_compute_in_float32():
    X_int = np.round(X30 * 2).astype(np.int64)
    x64_before = jax.config.jax_enable_x64
    probas = []
    for X in (X_int, X_int.astype(np.float32), X_int.astype(np.float64)):
        clf = fast().fit(X, y30)
        assert all(W.dtype == np.float32 for W in clf.coefs_ + clf.intercepts_)
        probas.append(clf.predict_proba(X))
    np.testing.assert_array_equal(probas[0], probas[1])
    np.testing.assert_array_equal(probas[0], probas[2])
    clf = fast().fit(X30 > 0, y30)  # booleans are numbers too
    assert_valid_proba(clf.predict_proba(X30 > 0), 30, 3)
    assert jax.config.jax_enable_x64 == x64_before
    # an x64 session does not change the computation dtype
    with jax.enable_x64(True):
        clf = fast().fit(X_int.astype(np.float64), y30)
        assert all(W.dtype == np.float32 for W in clf.coefs_)
        assert_valid_proba(clf.predict_proba(X_int), 30, 3)
    assert jax.config.jax_enable_x64 == x64_before


# -------------------------------------------------------------------- numerical failure

def test_huge_sgd_learning_rate_stops_with_the_phase_and_epoch():
    clf = fast()
    with pytest.raises(ValueError, match=r"non-finite \(NaN or inf\) in the SGD phase at "
                                         r"epoch 1\. Lower `learning_rate` \(got 1e\+30"):
        clf.set_params(learning_rate=1e30).fit(X30, y30)
    assert_unfitted(clf)


def test_failed_refit_clears_the_previous_fit():
    clf = fast().fit(pd.DataFrame(X30, columns=list("abcd")), y30)
    check_is_fitted(clf)
    with pytest.raises(ValueError, match="SGD phase at epoch 1"):
        clf.set_params(learning_rate=1e30).fit(X30, y30)
    assert_unfitted(clf)
    with pytest.raises(NotFittedError):
        clf.predict(X30)
    # an invalid parameter also leaves the estimator unfitted
    clf = fast().fit(X30, y30)
    with pytest.raises(ValueError, match="learning_rate"):
        clf.set_params(learning_rate=-1.0).fit(X30, y30)
    assert_unfitted(clf)


@pytest.mark.parametrize("ntk_phase", ["frozen_jacobian", "linearized"])
def test_huge_ntk_learning_rate_stops_in_the_ntk_phase(ntk_phase):
    clf = fast(ntk_phase=ntk_phase, ntk_learning_rate=1e38, ntk_solver="gd")
    with pytest.raises(ValueError, match=(
            rf"in the NTK phase \(ntk_phase='{ntk_phase}'\) at epoch 3 \(epoch 1 of that "
            rf"phase\)\. Lower `ntk_learning_rate` \(got 1e\+38")):
        clf.fit(X30, y30)
    assert_unfitted(clf)


def _poison_first_unit(params):
    """W1[:, 0] = -inf: with positive inputs the unit is dead (relu(-inf) = 0), so the
    loss stays finite and only the parameter check can notice."""
    (W1, b1), *rest = params
    return [(W1.at[:, 0].set(-jnp.inf), b1), *rest]


def test_non_finite_parameters_with_a_finite_loss_are_caught_in_sgd(monkeypatch):
    epoch_and_metrics = training_module._sgd_epoch_and_metrics
    calls = []

    def poisoned_epoch(params, train, val, order, n_samples, *args):
        if n_samples:  # an epoch (n_samples=0 gives the initial metrics)
            calls.append(1)
        if len(calls) == 2:  # the parameters entering epoch 2; epoch 2 keeps W1[:, 0] at -inf
            params = _poison_first_unit(params)
        return epoch_and_metrics(params, train, val, order, n_samples, *args)

    monkeypatch.setattr(training_module, "_sgd_epoch_and_metrics", poisoned_epoch)
    clf = fast(max_sgd_epochs=3, switch=None, ntk_phase=None)
    X_pos = np.abs(X30) + 1
    with pytest.raises(ValueError, match=r"the parameters became non-finite \(NaN or inf\) "
                                         r"in the SGD phase at epoch 2"):
        clf.fit(X_pos, y30)
    assert_unfitted(clf)


def test_non_finite_parameters_are_caught_in_the_ntk_phase(monkeypatch):
    step = FrozenJacobianPhase.step

    def poisoned_step(state, epoch, settings):
        state = step(state, epoch, settings)
        return state._replace(params=_poison_first_unit(state.params))

    monkeypatch.setattr(FrozenJacobianPhase, "step", staticmethod(poisoned_step))
    clf = fast(ntk_phase="frozen_jacobian")
    with pytest.raises(ValueError, match=r"the parameters became non-finite .* NTK phase "
                                         r"\(ntk_phase='frozen_jacobian'\) at epoch 3"):
        clf.fit(np.abs(X30) + 1, y30)
    assert_unfitted(clf)


def test_overflowing_logits_rule():
    inf, nan = np.inf, np.nan
    logits = np.array([[inf, 0.0, -inf], [nan, 0.0, 1.0], [inf, inf, 0.0],
                       [nan, nan, nan], [-inf, -inf, -inf], [inf, nan, -inf]])
    e = 1 / (1 + np.e)
    want = np.array([[1, 0, 0], [0, e, 1 - e], [0.5, 0.5, 0], [1 / 3] * 3, [1 / 3] * 3,
                     [1, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(softmax(usable_logits(logits)), want, rtol=1e-15)


@pytest.mark.parametrize("ntk_phase", [None, "frozen_jacobian", "linearized", "kernel"])
def test_predict_proba_is_finite_far_outside_the_training_range(ntk_phase):
    clf = fast(ntk_phase=ntk_phase).fit(X30, y30)
    for scale in (1e30, -1e30, 1e300):
        X = X30 * scale
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            proba = clf.predict_proba(X)
            pred = clf.predict(X)
        assert_valid_proba(proba, 30, 3)
        np.testing.assert_array_equal(pred, clf.classes_[np.argmax(proba, axis=1)])


# ---------------------------------------------------------------------------- memory

@pytest.mark.parametrize("switch", ["ntk_norm", "kernel_distance"])
def test_monitor_kernel_over_budget_is_refused_before_training(switch, capsys):
    clf = fast(switch=switch, max_kernel_bytes=1000, verbose=1)
    with pytest.raises(ValueError, match=(
            # 30 samples, padded to the bucket of 32 rows (skntk._buckets)
            r"monitor kernel of shape \(32, 32\) \(float32\) needs about .*bytes.*budget "
            r"`max_kernel_bytes` = .*1,000 bytes.*lower `ntk_monitor_size` \(got 128\)")):
        clf.fit(X30, y30)
    assert "epoch" not in capsys.readouterr().out
    assert_unfitted(clf)
    # the monitor subset is what counts: a smaller one fits
    needed = fast(switch=switch, ntk_monitor_size=4, max_kernel_bytes=20_000).fit(X30, y30)
    check_is_fitted(needed)


def test_kernel_phase_kernels_over_budget_are_refused_before_training(capsys):
    layer_sizes = (4, 8, 3)
    train_bytes = check_kernel(layer_sizes, 30, 30, np.inf, ("k", "h"),
                               copies=TRAINING_KERNEL_COPIES)
    clf = fast(switch=None, ntk_phase="kernel", kernel_solver="dense",
               max_kernel_bytes=train_bytes - 1, verbose=1)
    with pytest.raises(ValueError, match=(
            r"training kernel of ntk_phase='kernel' of shape \(30, 30\).*"
            r"ntk_phase='frozen_jacobian'.*raise `max_kernel_bytes`")):
        clf.fit(X30, y30)
    assert "epoch" not in capsys.readouterr().out
    assert_unfitted(clf)
    # prediction forms no cross kernel (it applies it block by block): the training
    # kernel's budget fits and predicts any number of rows
    clf.set_params(max_kernel_bytes=train_bytes, verbose=0).fit(X30, y30)
    X_val = np.tile(X30, (10, 1))
    assert_valid_proba(clf.predict_proba(X_val), 300, 3)
    # a validation set needs its cross kernel, kept beside the float64 eigenvectors
    val_bytes = check_kernel(layer_sizes, 300, 30, np.inf, ("k", "h"),
                             copies=CROSS_KERNEL_COPIES, held_bytes=30 * 30 * 8)
    assert val_bytes > train_bytes
    assert check_kernel_phase_budget(layer_sizes, 30, val_bytes, n_val=300) == val_bytes
    with pytest.raises(ValueError, match=r"validation cross kernel .* \(300, 30\)"):
        check_kernel_phase_budget(layer_sizes, 30, val_bytes - 1, n_val=300)
    with pytest.raises(ValueError, match=r"validation cross kernel .* \(300, 30\)"):
        clf.fit(X30, y30, X_val, np.tile(y30, 10))
    # kernel_solver="auto" never forms a kernel that is over the budget
    auto = clf.set_params(kernel_solver="auto", max_kernel_bytes=train_bytes - 1).fit(X30, y30)
    assert auto.kernel_solver_ == "matrix_free"


def test_ntk_module_refuses_faulty_inputs():
    rng = np.random.RandomState(0)
    params = init_mlp_params((4, 8, 3), rng)
    X = rng.normal(size=(5, 4))
    X_nan = X.copy()
    X_nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="`X1` contains NaN or infinite values"):
        empirical_ntk(params, X_nan)
    with pytest.raises(ValueError, match="`X2` contains NaN or infinite values"):
        empirical_ntk(params, X, X_nan)
    with pytest.raises(ValueError, match="`X1` contains NaN .* values beyond the float32"):
        empirical_ntk(params, X * 1e300)
    with pytest.raises(TypeError, match=r"`X1` is a scipy sparse matrix.*`X1\.toarray\(\)`"):
        empirical_ntk(params, scipy.sparse.csr_matrix(X))
    bad = [(params[0][0], params[0][1]), (np.full_like(params[1][0], np.nan), params[1][1])]
    with pytest.raises(ValueError, match=r"`params` hold NaN or infinite values \(layer 2, W\)"):
        empirical_ntk(bad, X)
    with pytest.raises(ValueError, match=r"Layer 2 of `params` has W of shape \(7, 3\)"):
        empirical_ntk([params[0], (np.ones((7, 3)), np.zeros(3))], X)
    with pytest.raises(ValueError, match="`V` contains NaN"):
        ntk_vector_product(params, X, np.full(5, np.nan))
    with pytest.raises(TypeError, match=r"`X\.toarray\(\)`"):
        ntk_vector_product(params, scipy.sparse.csr_matrix(X), np.ones(5))
    with pytest.raises(ValueError, match=r"needs about .*, more than the budget "
                                         r"`max_bytes` = .*100 bytes"):
        empirical_ntk(params, X, max_bytes=100)


# ------------------------------------------------------------ reproducibility and state

def _assert_same_fit(a, b):
    for key, value in a.history_.items():
        if key != "elapsed_s":
            np.testing.assert_array_equal(value, b.history_[key])
    assert (a.switch_epoch_, a.switch_reached_, a.n_iter_) == (
        b.switch_epoch_, b.switch_reached_, b.n_iter_)
    np.testing.assert_array_equal(a.predict_proba(X30), b.predict_proba(X30))


def test_random_state_int_and_randomstate_follow_sklearn():
    params = dict(switch="param_norm", switch_window=1, switch_threshold=0.5,
                  validation_fraction=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = fast(**params).fit(X30, y30)
        b = fast(**params).fit(X30, y30)
        _assert_same_fit(a, b)
        # a RandomState seeded like the int gives the same first fit ...
        rs = np.random.RandomState(0)
        c = fast(**params, random_state=rs).fit(X30, y30)
        _assert_same_fit(a, c)
        # ... and, being consumed, a different second one
        c.fit(X30, y30)
        assert not np.array_equal(a.history_["train_loss"], c.history_["train_loss"])
        check_is_fitted(fast(**params, random_state=None).fit(X30, y30))


def test_refit_equals_a_fresh_fit():
    clf = fast(ntk_phase="kernel").fit(X30[::-1], np.array(["x", "y", "z"])[y30[::-1]])
    clf.fit(X30, y30)
    _assert_same_fit(clf, fast(ntk_phase="kernel").fit(X30, y30))
    assert clf.classes_.dtype == y30.dtype


@pytest.mark.parametrize("ntk_phase", ["frozen_jacobian", "kernel"])
def test_pickle_joblib_deepcopy_after_predict_and_clone(ntk_phase):
    clf = fast(ntk_phase=ntk_phase).fit(X30, y30)
    proba, pred = clf.predict_proba(X30), clf.predict(X30)
    buffer = io.BytesIO()
    joblib.dump(clf, buffer)
    buffer.seek(0)
    for restored in (pickle.loads(pickle.dumps(clf)), joblib.load(buffer), copy.deepcopy(clf)):
        np.testing.assert_array_equal(restored.predict_proba(X30), proba)
        np.testing.assert_array_equal(restored.predict(X30), pred)
    cloned = clone(clf)
    assert_unfitted(cloned)
    assert cloned.get_params() == clf.get_params()


def test_grid_search_in_parallel_with_a_prefitted_estimator_matches_serial():
    X, y = blobs(n_samples=40, n_features=4, n_classes=2, seed=1)
    est = fast(max_sgd_epochs=2, switch=None).fit(X, y)
    grid = {"ntk_learning_rate": [0.1, 1.0]}
    results = [GridSearchCV(est, grid, cv=2, n_jobs=n_jobs).fit(X, y) for n_jobs in (1, 2)]
    serial, parallel = results
    assert serial.best_params_ == parallel.best_params_
    np.testing.assert_array_equal(serial.cv_results_["mean_test_score"],
                                  parallel.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(serial.predict_proba(X), parallel.predict_proba(X))
    check_is_fitted(est)  # the estimator passed in is left as it was


# ------------------------------------------------------------------- no input is modified

def test_no_input_is_modified():
    rng = np.random.RandomState(0)
    X32 = X30.astype(np.float32)  # passes validation without a copy
    X_fortran = np.asfortranarray(X30 * 1e30)
    y_obj = np.array(["a", "b", "c"], dtype=object)[y30]
    df = pd.DataFrame(X30, columns=list("abcd"))
    inputs = [X32, X_fortran, y_obj, df, X30[:6], y_obj[:6]]
    copies = [x.copy() for x in inputs]
    clf = fast(ntk_phase="kernel").fit(X32, y_obj, X30[:6], y_obj[:6])
    clf.predict_proba(X_fortran)
    clf.predict(X32)
    fast(validation_fraction=0.2).fit(df, y_obj).predict_proba(df)
    fast(random_state=rng).fit(X32, y_obj)
    for original, kept in zip(inputs, copies):
        if isinstance(original, pd.DataFrame):
            pd.testing.assert_frame_equal(original, kept)
        else:
            np.testing.assert_array_equal(original, kept)


# -------------------------------------------------------------------- property-based

LABEL_SETS = {
    "int": np.array([-5, 0, 17]),
    "str": np.array(["no", "maybe", "yes"]),
    "object": np.array(["b", "a", "c"], dtype=object),
    "float": np.array([0.0, 2.0, -3.0]),
}


@settings(max_examples=12, deadline=None)
@given(n_samples=st.sampled_from([6, 11]), n_features=st.sampled_from([1, 3]),
       n_classes=st.sampled_from([2, 3]), label_kind=st.sampled_from(sorted(LABEL_SETS)),
       dtype=st.sampled_from([np.int64, np.float32, np.float64]),
       ntk_phase=st.sampled_from([None, "frozen_jacobian", "kernel"]),
       seed=st.integers(0, 2**16))
def test_fit_predict_invariants(n_samples, n_features, n_classes, label_kind, dtype,
                                ntk_phase, seed):
    rng = np.random.RandomState(seed)
    X = (rng.normal(size=(n_samples, n_features)) * 3).astype(dtype)
    index = np.arange(n_samples) % n_classes
    rng.shuffle(index)
    y = LABEL_SETS[label_kind][:n_classes][index]
    X_copy, y_copy = X.copy(), y.copy()
    clf = HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=2, switch="fixed_epoch",
                              switch_epoch=1, ntk_phase=ntk_phase, ntk_epochs=2,
                              batch_size=4, validation_fraction=None, random_state=seed)
    clf.fit(X, y)
    proba, pred = clf.predict_proba(X), clf.predict(X)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    assert_valid_proba(proba, n_samples, n_classes)
    assert pred.dtype == y.dtype and set(pred.tolist()) <= set(y.tolist())
    np.testing.assert_array_equal(pred, clf.classes_[np.argmax(proba, axis=1)])
    # a sample's prediction does not depend on the others predicted with it
    np.testing.assert_array_equal(clf.predict_proba(X[:1]), proba[:1])
    assert clf.n_iter_ == 1 + (0 if ntk_phase is None else 2)  # switch after epoch 1
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)
