"""Parameters and fitted state: clone, deep copy and pickle with any ``devices``;
``set_params`` after ``fit``; numpy scalar hyperparameters under JAX's 64-bit mode.

Networks are tiny and the data has the shape of ``tests/test_validation.py`` (30 x 4,
3 classes), so that the jitted functions compile once.
"""

import copy
import pickle
import warnings

import jax
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.validation import check_is_fitted

from skntk import HybridNTKClassifier, HybridNTKRegressor
from skntk._devices import MissingDevice, PickledDevices

from .conftest import blobs

FAST = dict(hidden_layer_sizes=(8,), max_sgd_epochs=3, switch="fixed_epoch", switch_epoch=2,
            ntk_epochs=2, validation_fraction=None, random_state=0)
X30, y30 = blobs(n_samples=30, n_features=4, n_classes=3)
X_NEW = X30[::-1] + 0.3  # not the training inputs: cross kernels are used


def fast(**params):
    return HybridNTKClassifier(**{**FAST, **params})


# --------------------------------------------------------------------------- devices

@pytest.mark.parametrize("devices", [None, 1, "list"])
def test_every_form_of_devices_survives_clone_deepcopy_and_pickle(devices):
    devices = jax.local_devices()[:1] if devices == "list" else devices
    clf = fast(devices=devices)
    for copied in (clone(clf), copy.deepcopy(clf), pickle.loads(pickle.dumps(clf))):
        assert copied.get_params() == clf.get_params()
    clf.fit(X30, y30)
    proba = clf.predict_proba(X_NEW)
    for restored in (copy.deepcopy(clf), pickle.loads(pickle.dumps(clf))):
        assert restored.devices == devices
        np.testing.assert_array_equal(restored.predict_proba(X_NEW), proba)
        np.testing.assert_array_equal(restored.predict(X_NEW), clf.predict(X_NEW))
    # one device, named or not, computes the same thing
    np.testing.assert_array_equal(fast().fit(X30, y30).predict_proba(X_NEW), proba)


def test_a_list_of_devices_in_clone_cross_val_score_and_pickle():
    devices = jax.local_devices()[:1]
    clf = fast(devices=devices)
    cloned = clone(clf)
    # a new list of the same devices: the device handles are shared, never copied
    assert cloned.devices == devices and cloned.devices is not devices
    assert all(a is b for a, b in zip(cloned.devices, devices))
    expected = cross_val_score(fast(), X30, y30, cv=3)
    np.testing.assert_array_equal(cross_val_score(clf, X30, y30, cv=3), expected)
    # in worker processes: the estimator is pickled, its devices found again there
    np.testing.assert_array_equal(cross_val_score(clf, X30, y30, cv=3, n_jobs=2), expected)
    fitted = clf.fit(X30, y30)
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.devices == devices and restored.devices[0] is devices[0]
    np.testing.assert_array_equal(restored.predict_proba(X_NEW), fitted.predict_proba(X_NEW))
    assert fitted.devices[0] is devices[0]  # pickling left the estimator as it was


def test_a_device_missing_where_the_pickle_is_loaded_predicts_but_refuses_to_fit():
    fitted = fast(devices=jax.local_devices()[:1]).fit(X30, y30)
    state = fitted.__getstate__()
    assert state["devices"] == PickledDevices([(jax.local_devices()[0].platform,
                                                jax.local_devices()[0].id)])
    # as if pickled on a machine with a device this one does not have
    restored = HybridNTKClassifier.__new__(HybridNTKClassifier)
    with pytest.warns(UserWarning, match=r"pickled with devices that this process does "
                                         r"not have: nodevice device 7 \(not available"):
        restored.__setstate__(dict(state, devices=PickledDevices([("nodevice", 7)])))
    assert restored.devices == [MissingDevice("nodevice", 7)]
    np.testing.assert_array_equal(restored.predict_proba(X_NEW), fitted.predict_proba(X_NEW))
    with pytest.warns(UserWarning, match="nodevice device 7"):
        again = pickle.loads(pickle.dumps(restored))  # and it pickles again
    assert again.devices == [MissingDevice("nodevice", 7)]
    assert clone(again).devices == again.devices
    with pytest.raises(ValueError, match=r"`devices\[0\]` is nodevice device 7 \(not "
                                         r"available in this process\).*Pass devices=None"):
        again.fit(X30, y30)
    with pytest.raises(NotFittedError):  # the failed fit left it unfitted
        check_is_fitted(again)


@pytest.mark.parametrize("devices, match", [
    (["cpu:0"], r"`devices` must list jax devices .*`devices\[0\]` is 'cpu:0'"),
    ("twice", r"`devices` lists a device more than once"),
])
def test_devices_that_are_not_distinct_jax_devices_are_refused(devices, match):
    if devices == "twice":
        devices = jax.local_devices()[:1] * 2
    clf = fast(devices=devices)
    with pytest.raises(ValueError, match=match):
        clf.fit(X30, y30)
    assert not hasattr(clf, "coefs_")


# --------------------------------------------------------------- set_params after fit

PHASES = [
    dict(ntk_phase=None),
    dict(ntk_phase="frozen_jacobian"),
    dict(ntk_phase="linearized"),
    dict(ntk_phase="kernel", kernel_solver="dense"),
    dict(ntk_phase="kernel", kernel_solver="matrix_free"),
]


def _phase_id(params):
    return "-".join(str(v) for v in params.values())


@pytest.mark.parametrize("fitted_phase", PHASES, ids=_phase_id)
def test_set_params_after_fit_changes_no_prediction_until_the_next_fit(fitted_phase):
    clf = fast(**fitted_phase).fit(X30, y30)
    proba, pred = clf.predict_proba(X_NEW), clf.predict(X_NEW)
    for phase in PHASES:
        # every other phase and solver, with other NTK settings and a budget of 1 byte
        clf.set_params(**{"kernel_solver": "auto", **phase}, max_kernel_bytes=1,
                       kernel_ridge=5.0, ntk_epochs=7, ntk_learning_rate=0.01,
                       switch="param_norm", hidden_layer_sizes=(3,), kernel_offset="network",
                       kernel_tol=0.5, kernel_max_iter=1, ntk_solver="gd",
                       parameterization="ntk")
        np.testing.assert_array_equal(clf.predict_proba(X_NEW), proba)
        np.testing.assert_array_equal(clf.predict(X_NEW), pred)
    assert clf.ntk_phase_ == fitted_phase["ntk_phase"] and clf.switch_ == "fixed_epoch"
    assert clf.kernel_solver_ == fitted_phase.get("kernel_solver")
    # the next fit uses the parameters set
    other = PHASES[(PHASES.index(fitted_phase) + 1) % len(PHASES)]
    defaults = HybridNTKClassifier().get_params()
    clf.set_params(**FAST, **{"kernel_solver": "auto", **other},
                   **{name: defaults[name] for name in (
                       "max_kernel_bytes", "kernel_ridge", "ntk_learning_rate",
                       "kernel_offset", "kernel_tol", "kernel_max_iter", "ntk_solver",
                       "parameterization")}
                   ).fit(X30, y30)
    assert clf.ntk_phase_ == other["ntk_phase"]
    np.testing.assert_array_equal(clf.predict_proba(X_NEW),
                                  fast(**other).fit(X30, y30).predict_proba(X_NEW))
    assert not np.array_equal(clf.predict_proba(X_NEW), proba)


@pytest.mark.parametrize("fitted_phase", PHASES, ids=_phase_id)
def test_set_params_after_fit_changes_no_regression_until_the_next_fit(fitted_phase):
    y = np.column_stack([X30[:, 0] * X30[:, 1], np.sin(X30[:, 2])])
    kernel = fitted_phase["ntk_phase"] == "kernel"
    reg = HybridNTKRegressor(**{**FAST, **fitted_phase, "ntk_epochs": np.inf if kernel else 2})
    reg.fit(X30, y)
    pred = reg.predict(X_NEW)
    variance = reg.predict_variance(X_NEW) if kernel else None
    for phase in PHASES:
        reg.set_params(**{"kernel_solver": "auto", **phase}, max_kernel_bytes=1,
                       kernel_ridge=5.0, ntk_epochs=7, ntk_learning_rate=0.01,
                       switch="param_norm", hidden_layer_sizes=(3,), kernel_offset="zero",
                       kernel_tol=0.5, kernel_max_iter=1, ntk_solver="gd",
                       parameterization="ntk", normalize_y=False)
        np.testing.assert_array_equal(reg.predict(X_NEW), pred)
        if variance is not None:
            np.testing.assert_array_equal(reg.predict_variance(X_NEW), variance)
    assert reg.ntk_phase_ == fitted_phase["ntk_phase"]
    assert reg.kernel_solver_ == fitted_phase.get("kernel_solver")


def test_set_params_after_fit_examples_of_the_issue():
    linearized = fast(ntk_phase="linearized").fit(X30, y30)
    expected = linearized.predict_proba(X_NEW)
    linearized.set_params(ntk_phase="kernel")  # used to raise KeyError: 'coefficients'
    np.testing.assert_array_equal(linearized.predict_proba(X_NEW), expected)
    kernel = fast(ntk_phase="kernel").fit(X30, y30)
    expected = kernel.predict_proba(X_NEW)
    kernel.set_params(ntk_phase=None)  # used to give the SGD network's probabilities
    np.testing.assert_array_equal(kernel.predict_proba(X_NEW), expected)
    assert kernel.score(X30, y30) == fast(ntk_phase="kernel").fit(X30, y30).score(X30, y30)


# ------------------------------------------------- numpy scalars, JAX's 64-bit mode

@pytest.fixture
def jax_x64():
    """JAX's 64-bit mode on for one test; the previous setting is restored after it."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


NUMPY_SCALARS = dict(
    learning_rate=np.float64(0.05), batch_size=np.int64(8), max_sgd_epochs=np.int64(3),
    switch_window=np.int64(2), switch_threshold=np.float64(0.0), ntk_monitor_size=np.int64(16),
    ntk_epochs=np.float64(2.0), ntk_learning_rate=np.float64(0.5), kernel_ridge=np.float64(0.1),
    kernel_tol=np.float64(1e-5), kernel_max_iter=np.int64(50),
    max_kernel_bytes=np.int64(2**31), validation_fraction=np.float64(0.2),
)


@pytest.mark.parametrize("phase", PHASES, ids=_phase_id)
def test_numpy_scalar_hyperparameters_equal_python_numbers_under_x64(jax_x64, phase):
    assert jax.config.jax_enable_x64
    python = {name: value.item() for name, value in NUMPY_SCALARS.items()}
    fits = []
    for params in (NUMPY_SCALARS, python):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(HybridNTKClassifier(
                hidden_layer_sizes=(8,), switch="kernel_distance", random_state=0,
                **phase, **params).fit(X30, y30))
    numpy_fit, python_fit = fits
    assert all(W.dtype == np.float32 for W in numpy_fit.coefs_ + numpy_fit.intercepts_)
    np.testing.assert_array_equal(numpy_fit.history_["train_loss"],
                                  python_fit.history_["train_loss"])
    np.testing.assert_array_equal(numpy_fit.predict_proba(X_NEW),
                                  python_fit.predict_proba(X_NEW))


def test_grid_search_over_numpy_logspace_under_x64(jax_x64):
    grid = {"learning_rate": np.logspace(-2, -1, 2), "ntk_learning_rate": np.logspace(-2, -1, 2)}
    searches = [GridSearchCV(fast(), values, cv=2, error_score="raise").fit(X30, y30)
                for values in (grid, {k: v.tolist() for k, v in grid.items()})]
    numpy_search, python_search = searches
    np.testing.assert_array_equal(numpy_search.cv_results_["mean_test_score"],
                                  python_search.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(numpy_search.predict_proba(X_NEW),
                                  python_search.predict_proba(X_NEW))
