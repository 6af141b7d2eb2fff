"""The model interface: the generic path (any model, by automatic differentiation)
against the MLP's layer-wise path, and a user model through scikit-learn's tools."""

import pickle
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skntk import HybridNTKClassifier, HybridNTKRegressor
from skntk._linearized import jacobian_vector_product, linearization, vector_jacobian_product
from skntk._matrix_free import TrainingKernel, cross_kernel_apply
from skntk._parameterization import layer_scales
from skntk._switch import _monitor_kernel_jit
from skntk.models import MLP, EquinoxModel, FlaxModel, FunctionModel
from skntk.ntk import _empirical_ntk

from . import _models
from ._models import mlp_problem, rel_error

SIZES = (5, 12, 9, 3)
APPLY = {"relu": _models.apply_relu_mlp, "tanh": _models.apply_tanh_mlp}


def problem(dtype, seed=0):
    return mlp_problem(SIZES, 13, 8, dtype, seed)


def networks(activation):
    """The MLP as the layer-wise path sees it and as a user model."""
    return (layer_scales(SIZES, "standard", activation),
            FunctionModel(_models.init_fixed, APPLY[activation]))


# ------------------------------------------------------------------ the model object

def test_equal_models_share_identity_and_survive_clone_and_pickle():
    model = FunctionModel(_models.init_two_layer, _models.apply_tanh)
    copies = [clone(model), pickle.loads(pickle.dumps(model))]
    for other in copies:
        assert other == model and hash(other) == hash(model) and other is not model
    assert model != FunctionModel(_models.init_two_layer, _models.apply_relu)
    assert MLP((8,)) == MLP(hidden_layer_sizes=(8,)) != MLP((8,), "tanh")
    # A static argument of the compiled programs, and a pytree without leaves.
    assert len(jax.tree.leaves({"model": model, "x": jnp.ones(2)})) == 1


# ------------------------------------------------------------------ kernels and products

@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("per_logit", [False, True])
def test_generic_kernel_equals_layerwise_float32(activation, per_logit):
    params, X1, X2 = problem(np.float32)
    scales, model = networks(activation)
    for columns in (None, X2):
        K_layerwise = _empirical_ntk(params, X1, columns, per_logit=per_logit, scales=scales)
        K_generic = _empirical_ntk(params, X1, columns, per_logit=per_logit, scales=model)
        assert K_generic.shape == K_layerwise.shape
        assert rel_error(K_generic, K_layerwise) < 1e-5


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_generic_kernel_equals_layerwise_float64(activation):
    with jax.enable_x64(True):
        params, X1, X2 = problem(np.float64)
        scales, model = networks(activation)
        K_layerwise = _empirical_ntk(params, X1, X2, scales=scales)
        K_generic = _empirical_ntk(params, X1, X2, scales=model)
        assert K_generic.dtype == jnp.float64
        assert rel_error(K_generic, K_layerwise) < 1e-10


def test_generic_monitor_kernel_and_products_equal_layerwise():
    params, X1, X2 = problem(np.float32)
    scales, model = networks("tanh")
    n_real = 10  # rows past it pad the subset and are zeroed
    K_layerwise = _monitor_kernel_jit(params, X1, n_real, layer_scales=scales)
    K_generic = _monitor_kernel_jit(params, X1, n_real, layer_scales=model)
    assert rel_error(K_generic, K_layerwise) < 1e-5
    assert not np.asarray(K_generic)[n_real:].any()

    V = np.random.RandomState(1).standard_normal((X1.shape[0], 3))
    operators = [TrainingKernel(params, X1, 3, 0.5, block_size=4, layer_scales=network)
                 for network in (scales, model)]
    layerwise, generic = operators
    assert rel_error(generic.matvec(V), layerwise.matvec(V)) < 1e-5
    assert rel_error(generic.diagonal(), layerwise.diagonal()) < 1e-5

    A = np.random.RandomState(2).standard_normal((X1.shape[0], 3))
    outputs = [cross_kernel_apply(params, X2, X1, A, 3, block_size=4, layer_scales=network)
               for network in (scales, model)]
    assert rel_error(outputs[1], outputs[0]) < 1e-5


def test_generic_linearization_equals_layerwise():
    params, X1, _ = problem(np.float32)
    scales, model = networks("tanh")
    direction = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape),
                             params)
    cotangent = jnp.asarray(np.random.RandomState(3).standard_normal((X1.shape[0], 3)),
                            jnp.float32)
    layerwise, generic = (linearization(params, X1, network) for network in (scales, model))
    assert rel_error(generic.logits, layerwise.logits) < 1e-6
    assert rel_error(jacobian_vector_product(generic, direction),
                     jacobian_vector_product(layerwise, direction)) < 1e-5
    for a, b in zip(jax.tree.leaves(vector_jacobian_product(generic, cotangent)),
                    jax.tree.leaves(vector_jacobian_product(layerwise, cotangent))):
        assert rel_error(a, b) < 1e-5


# ------------------------------------------------------------------ fitted predictions

PHASES = [
    dict(ntk_phase=None),
    dict(ntk_phase="frozen_jacobian"),
    dict(ntk_phase="linearized", ntk_solver="gd"),
    dict(ntk_phase="linearized", ntk_solver="lbfgs"),
    dict(ntk_phase="kernel", kernel_solver="dense"),
    dict(ntk_phase="kernel", kernel_solver="matrix_free"),
    dict(ntk_phase="kernel", kernel_solver="dense", ntk_epochs=np.inf, kernel_ridge=1e-2),
    dict(ntk_phase="kernel", kernel_solver="matrix_free", ntk_epochs=np.inf, kernel_ridge=1e-2),
]


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=90, n_features=SIZES[0], n_informative=4,
                               n_redundant=0, n_classes=3, random_state=0)
    return StandardScaler().fit_transform(X).astype(np.float32), y


@pytest.mark.parametrize("phase", PHASES, ids=lambda p: "-".join(map(str, p.values())))
def test_generic_fit_predicts_as_layerwise_fit(blobs, phase):
    """The same network from the same start, once by the layer-wise path and once as a
    user model: full-batch SGD (the shuffling, drawn differently by the two, does not
    matter), a fixed switch and fixed steps (no monitor subset)."""
    X, y = blobs
    params, _, _ = problem(np.float32)
    _models.FIXED_PARAMS[:] = [params]
    settings = {**dict(batch_size=128, learning_rate=0.1, max_sgd_epochs=4,
                       switch="fixed_epoch", switch_epoch=2, ntk_epochs=3,
                       ntk_learning_rate=0.5, validation_fraction=None, random_state=0),
                **phase}
    layerwise = HybridNTKClassifier(hidden_layer_sizes=SIZES[1:-1], **settings).fit(
        X, y, coef_init=[np.asarray(W) for W, _ in params],
        intercept_init=[np.asarray(b) for _, b in params])
    generic = HybridNTKClassifier(model=FunctionModel(_models.init_fixed,
                                                      _models.apply_relu_mlp),
                                  **settings).fit(X, y)
    assert generic.kernel_solver_ == layerwise.kernel_solver_
    np.testing.assert_allclose(generic.predict_proba(X), layerwise.predict_proba(X),
                               atol=1e-4)
    if phase.get("ntk_epochs") == np.inf:  # kernel regression: the posterior variance too
        np.testing.assert_allclose(generic.predict_variance(X[:20]),
                                   layerwise.predict_variance(X[:20]), rtol=1e-3, atol=1e-4)
    for a, b in zip(jax.tree.leaves(generic.params_),
                    [leaf for pair in zip(layerwise.coefs_, layerwise.intercepts_)
                     for leaf in pair]):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_mlp_model_is_the_builtin_network(blobs):
    X, y = blobs
    settings = dict(max_sgd_epochs=3, random_state=0)
    builtin = HybridNTKClassifier(hidden_layer_sizes=(12,), activation="tanh", **settings)
    as_model = HybridNTKClassifier(model=MLP(12, "tanh"), **settings)
    builtin.fit(X, y)
    as_model.fit(X, y)
    np.testing.assert_array_equal(as_model.predict_proba(X), builtin.predict_proba(X))
    for a, b in zip(as_model.coefs_, builtin.coefs_):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ the user's model

def test_user_model_fitted_state_and_errors(blobs):
    X, y = blobs
    model = FunctionModel(_models.init_two_layer, _models.apply_tanh)
    clf = HybridNTKClassifier(model=model, max_sgd_epochs=3, switch="fixed_epoch",
                              switch_epoch=2, random_state=0).fit(X, y)
    assert jax.tree.structure(clf.params_) == jax.tree.structure(
        model.init(jax.random.PRNGKey(0), X.shape[1], 3))
    assert clf.params_["out"]["W"].shape == (16, 3)
    assert clf.model_ == model and clf.model_ is not model
    with pytest.raises(AttributeError, match="params_"):
        clf.coefs_
    assert not hasattr(clf, "switch_intercepts_")
    # The outputs are those of the model at the fitted parameters (ntk_phase=None).
    net = HybridNTKClassifier(model=model, max_sgd_epochs=3, ntk_phase=None,
                              switch="fixed_epoch", switch_epoch=2, random_state=0).fit(X, y)
    logits = np.asarray(_models.apply_tanh(net.params_, X), dtype=np.float64)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(net.predict_proba(X), expected / expected.sum(1, keepdims=True),
                               rtol=1e-5)

    # Any object with init and apply is taken as the pair of its two methods.
    duck = HybridNTKClassifier(model=_models.TwoLayerObject(), max_sgd_epochs=3,
                               switch="fixed_epoch", switch_epoch=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(duck.predict_proba(X), clf.predict_proba(X), rtol=1e-5)

    with pytest.raises(ValueError, match="parameterization.*must be 'standard'"):
        HybridNTKClassifier(model=model, parameterization="ntk").fit(X, y)
    with pytest.raises(ValueError, match=r"outputs of shape \(1, 3\).*needs \(1, 1\)"):
        HybridNTKRegressor(model=FunctionModel(_models.init_fixed, _models.apply_relu_mlp)
                           ).fit(X, y.astype(float))


def test_user_model_through_pipeline_grid_search_and_pickle(blobs):
    X, y = blobs
    clf = HybridNTKClassifier(model=FunctionModel(_models.init_two_layer, _models.apply_tanh),
                              max_sgd_epochs=3, random_state=0)
    search = GridSearchCV(make_pipeline(StandardScaler(), clf),
                          {"hybridntkclassifier__model__apply": [_models.apply_tanh,
                                                                 _models.apply_relu]}, cv=2)
    search.fit(X, y)
    assert [p["hybridntkclassifier__model__apply"] for p in search.cv_results_["params"]] \
        == [_models.apply_tanh, _models.apply_relu]
    best = search.best_estimator_
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict_proba(X), best.predict_proba(X))
    refit = clone(best).fit(X, y)
    np.testing.assert_allclose(refit.predict_proba(X), best.predict_proba(X), rtol=1e-5)


def test_flax_model():
    pytest.importorskip("flax")
    from ._flax_models import TwoLayer

    X, y = make_classification(n_samples=80, n_features=4, n_informative=3, n_redundant=0,
                               n_classes=3, random_state=1)
    clf = HybridNTKClassifier(model=FlaxModel(TwoLayer(8)), max_sgd_epochs=3, random_state=0)
    search = GridSearchCV(make_pipeline(StandardScaler(), clf),
                          {"hybridntkclassifier__model__module": [TwoLayer(4), TwoLayer(8)]},
                          cv=2).fit(X, y)
    best = search.best_estimator_
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict(X), best.predict(X))
    fitted = best[-1]
    module = fitted.model_.module
    logits = np.asarray(module.apply(fitted.params_, best[0].transform(X).astype(np.float32)))
    if fitted.ntk_phase_ is None:
        np.testing.assert_array_equal(best.predict(X), fitted.classes_[logits.argmax(1)])
    assert clone(clf).model == clf.model


def test_equinox_model():
    pytest.importorskip("equinox")
    X, y = make_classification(n_samples=80, n_features=4, n_informative=3, n_redundant=0,
                               n_classes=3, random_state=1)
    clf = HybridNTKClassifier(model=EquinoxModel(_models.make_equinox_8), max_sgd_epochs=3,
                              ntk_phase="kernel", random_state=0)
    search = GridSearchCV(make_pipeline(StandardScaler(), clf),
                          {"hybridntkclassifier__model__make": [_models.make_equinox_8,
                                                                _models.make_equinox_16]},
                          cv=2).fit(X, y)
    best = search.best_estimator_
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict_proba(X), best.predict_proba(X))
    assert best[-1].params_["outputs"].shape == (0, 3)


@pytest.mark.parametrize("model, extra", [(FlaxModel(None), "flax"),
                                          (EquinoxModel(_models.make_equinox_8), "equinox")])
def test_adapter_without_its_library_says_how_to_install_it(monkeypatch, model, extra):
    monkeypatch.setitem(sys.modules, extra, None)  # import raises ImportError
    with pytest.raises(ImportError, match=rf'pip install "skntk\[{extra}\]"'):
        model.init(jax.random.PRNGKey(0), 3, 2)


def test_user_model_memory_is_checked_before_training(blobs):
    """The dense kernel phase's training kernel and a monitor kernel are refused up front,
    their working memory counted from the model's per-sample Jacobians."""
    X, y = blobs
    model = FunctionModel(_models.init_two_layer, _models.apply_tanh)
    n_params = sum(leaf.size for leaf in jax.tree.leaves(
        model.init(jax.random.PRNGKey(0), X.shape[1], 3)))
    n_train, n_outputs, itemsize = 81, 3, 4  # 90 rows less the validation tenth

    def never(info):
        raise AssertionError("an epoch ran before the memory check")

    jacobian_blocks = 2 * itemsize * (64 + 64) * n_outputs * n_params
    kernel = itemsize * n_train ** 2
    expected = kernel + 7 * kernel + jacobian_blocks  # eight copies at the eigensolver
    with pytest.raises(ValueError, match=f"= {expected:,} bytes.*max_kernel_bytes"):
        HybridNTKClassifier(model=model, ntk_phase="kernel", kernel_solver="dense",
                            max_kernel_bytes=20_000, callbacks=never).fit(X, y)
    m = 64  # monitor rows (a bucket size: no padding)
    expected = itemsize * m * m * 2 + 2 * itemsize * m * n_outputs * n_params
    with pytest.raises(ValueError, match=f"monitor kernel.*= {expected:,} bytes"):
        HybridNTKClassifier(model=model, switch="ntk_norm", ntk_monitor_size=64,
                            max_kernel_bytes=20_000, callbacks=never).fit(X, y)


@pytest.mark.parametrize("switch", ["linearization_error", "kernel_velocity", "param_norm",
                                    "ntk_norm", "kernel_distance"])
def test_generic_criteria_and_diagnostics_equal_layerwise(blobs, switch):
    """Every criterion's statistic and the kernel diagnostics, epoch by epoch, on the
    MLP by both paths: the monitor subset is the whole training set (sorted, so drawn
    alike), SGD is full-batch and a threshold of 0 only records the statistic."""
    X, y = blobs
    params, _, _ = problem(np.float32)
    _models.FIXED_PARAMS[:] = [params]
    settings = dict(batch_size=128, learning_rate=0.1, max_sgd_epochs=6, switch=switch,
                    switch_window=2, switch_threshold=0.0, ntk_phase=None,
                    kernel_diagnostics=True, validation_fraction=None, random_state=0)
    layerwise = HybridNTKClassifier(hidden_layer_sizes=SIZES[1:-1], **settings).fit(
        X, y, coef_init=[np.asarray(W) for W, _ in params],
        intercept_init=[np.asarray(b) for _, b in params])
    generic = HybridNTKClassifier(model=FunctionModel(_models.init_fixed,
                                                      _models.apply_relu_mlp),
                                  **settings).fit(X, y)
    np.testing.assert_array_equal(generic.monitor_indices_, layerwise.monitor_indices_)
    for column in ("switch_statistic", "kernel_distance_from_init", "kernel_velocity",
                   "kernel_alignment", "kernel_effective_rank", "kernel_top_eigenvalues"):
        expected = layerwise.history_[column]
        assert np.isfinite(expected).any(), column
        np.testing.assert_allclose(generic.history_[column], expected, rtol=1e-3,
                                   atol=1e-6, err_msg=column)


def test_user_model_warm_start(blobs):
    X, y = blobs
    model = FunctionModel(_models.init_two_layer, _models.apply_tanh)
    settings = dict(max_sgd_epochs=2, switch="fixed_epoch", switch_epoch=2, ntk_phase=None,
                    learning_rate=0.3, random_state=0)
    clf = HybridNTKClassifier(model=model, warm_start=True, **settings).fit(X, y)
    first = clf.params_
    clf.fit(X, y)
    for a, b in zip(jax.tree.leaves(clf.init_params_), jax.tree.leaves(first), strict=True):
        np.testing.assert_array_equal(a, b)
    # Another network: refused before training, the fitted model kept.
    clf.set_params(model=MLP(4))
    with pytest.raises(ValueError, match="the built-in MLP cannot start from"):
        clf.fit(X, y)
    assert clf.params_ is not None and not hasattr(clf, "activation_")
    clf.set_params(model=MLP(4), warm_start=False).fit(X, y)
    clf.set_params(model=model, warm_start=True)
    with pytest.raises(ValueError, match="not those of the model FunctionModel"):
        clf.fit(X, y)
    assert clf.coefs_[0].shape == (X.shape[1], 4)
    with pytest.raises(ValueError, match="coef_init"):
        HybridNTKClassifier(model=model).fit(X, y, coef_init=[np.zeros((5, 3))],
                                             intercept_init=[np.zeros(3)])
