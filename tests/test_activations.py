"""The hidden layers' activations against references written here.

Every kernel reference is a contraction of ``jax.jacobian`` of a forward pass written in
this file (``np``-free, ``jnp`` functions named by the activation), so neither the
activation table nor the layer-wise factors of skntk enter it.
"""

import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erf
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss
from sklearn.utils._param_validation import InvalidParameterError

from skntk import HybridNTKClassifier, HybridNTKRegressor
from skntk._activations import ACTIVATIONS, activation_of
from skntk._linearized import jacobian_vector_product, linearization, vector_jacobian_product
from skntk._mlp import init_mlp_params
from skntk._parameterization import LayerScales, layer_scales
from skntk.ntk import empirical_ntk, ntk_gram, ntk_vector_product

NAMES = ("relu", "tanh", "erf", "gelu", "identity")

REFERENCE_PHI = {
    # relu'(0) = 0, jax.nn.relu's convention (the gradient of jnp.maximum(z, 0) at 0 is 1/2).
    "relu": lambda z: jnp.where(z > 0, z, 0.0),
    "tanh": jnp.tanh,
    "erf": erf,
    "gelu": lambda z: z * 0.5 * (1 + erf(z / math.sqrt(2))),
    "identity": lambda z: z,
}

N_FEATURES, N_CLASSES, HIDDEN = 4, 3, (6, 5)


def reference_forward(params, X, activation):
    h = X
    for W, b in params[:-1]:
        h = REFERENCE_PHI[activation](h @ W + b)
    W, b = params[-1]
    return h @ W + b


def reference_kernel(params, X1, X2, activation, scales=None, per_logit=False):
    """``Σ_p J(x)_{c,p} D_p J(x')_{c',p}`` from ``jax.jacobian`` of the whole batch
    (traced over ``c = c'`` unless ``per_logit``)."""
    def jac(X):
        J = jax.jacobian(reference_forward)(params, X, activation)  # per leaf (n, C, ...)
        leaves = []
        for layer, (dW, db) in enumerate(J):
            s_w, s_b = (1.0, 1.0) if scales is None else scales[layer]
            leaves += [dW.reshape(dW.shape[0], dW.shape[1], -1) * math.sqrt(s_w),
                       db * math.sqrt(s_b)]
        return jnp.concatenate(leaves, axis=2)

    J1, J2 = jac(X1), jac(X2)
    return jnp.einsum("icp,jdp->ijcd" if per_logit else "icp,jcp->ij", J1, J2)


def problem(dtype, seed=0):
    rng = np.random.RandomState(seed)
    params = init_mlp_params((N_FEATURES, *HIDDEN, N_CLASSES), rng, dtype=np.float64)
    params = [(jnp.asarray(W, dtype), jnp.asarray(0.3 * rng.standard_normal(b.shape), dtype))
              for W, b in params]
    X1 = jnp.asarray(rng.standard_normal((7, N_FEATURES)), dtype)
    X2 = jnp.asarray(rng.standard_normal((5, N_FEATURES)), dtype)
    return params, X1, X2


def rel_error(A, B):
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    return np.linalg.norm(A - B) / np.linalg.norm(B)


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_are_those_of_jax(name):
    with jax.enable_x64(True):
        # Holds 0 exactly, where relu' is 0 (numpy's grid: how an XLA program rounds
        # -4 + 40 * 0.1 depends on its compiler's optimisation level).
        z = jnp.asarray(np.linspace(-4.0, 4.0, 81))
        phi = ACTIVATIONS[name]
        np.testing.assert_allclose(phi.function(z), REFERENCE_PHI[name](z), rtol=1e-10,
                                   atol=1e-14)
        np.testing.assert_allclose(phi.derivative(z),
                                   jax.vmap(jax.grad(REFERENCE_PHI[name]))(z), rtol=1e-10,
                                   atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_layerwise_kernel_is_the_jacobian_contraction_float32(name):
    """Every kernel function of skntk.ntk, in the NTK parameterisation (the standard one
    is in the float64 test)."""
    params, X1, X2 = problem(jnp.float32)
    scales = layer_scales((N_FEATURES, *HIDDEN, N_CLASSES), "ntk")
    kwargs = dict(parameterization="ntk", activation=name)
    expected = reference_kernel(params, X1, X2, name, scales)
    assert rel_error(empirical_ntk(params, X1, X2, **kwargs), expected) < 1e-5
    assert rel_error(empirical_ntk(params, X1, X2, implementation="matrix_free", **kwargs),
                     expected) < 1e-5
    assert rel_error(empirical_ntk(params, X1, X2, per_logit=True, **kwargs),
                     reference_kernel(params, X1, X2, name, scales, per_logit=True)) < 1e-5
    assert rel_error(ntk_gram(params, X1, **kwargs),
                     reference_kernel(params, X1, X1, name, scales)) < 1e-5
    V = np.linspace(-1, 1, X2.shape[0])
    assert rel_error(ntk_vector_product(params, X1, V, X2=X2, block_size=3, **kwargs),
                     expected @ V) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_layerwise_kernel_is_the_jacobian_contraction_float64(name):
    with jax.enable_x64(True):
        params, X1, X2 = problem(jnp.float64)
        for parameterization in ("standard", "ntk"):
            scales = layer_scales((N_FEATURES, *HIDDEN, N_CLASSES), parameterization)
            K = empirical_ntk(params, X1, X2, block_size=4, parameterization=parameterization,
                              activation=name)
            assert K.dtype == jnp.float64
            assert rel_error(K, reference_kernel(params, X1, X2, name, scales)) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_linearized_products_are_jvp_and_vjp(name):
    """The cached Jacobian products of the linearised phases against jax.jvp / jax.vjp
    of the reference forward pass."""
    with jax.enable_x64(True):
        params, X, _ = problem(jnp.float64, seed=1)
        rng = np.random.RandomState(2)
        direction = [(jnp.asarray(rng.standard_normal(W.shape)),
                      jnp.asarray(rng.standard_normal(b.shape))) for W, b in params]
        cotangent = jnp.asarray(rng.standard_normal((X.shape[0], N_CLASSES)))
        lin = linearization(params, X, layer_scales((N_FEATURES, *HIDDEN, N_CLASSES),
                                                    "standard", name))
        outputs, jvp = jax.jvp(lambda p: reference_forward(p, X, name), (params,), (direction,))
        _, vjp = jax.vjp(lambda p: reference_forward(p, X, name), params)
        np.testing.assert_allclose(lin.logits, outputs, rtol=1e-12)
        np.testing.assert_allclose(jacobian_vector_product(lin, direction), jvp, rtol=1e-10)
        for got, want in zip(jax.tree.leaves(vector_jacobian_product(lin, cotangent)),
                             jax.tree.leaves(vjp(cotangent)[0])):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_layer_scales_carry_the_activation():
    sizes = (4, 6, 3)
    assert layer_scales(sizes, "standard") is None
    tanh = layer_scales(sizes, "standard", "tanh")
    assert tanh == LayerScales(((1.0, 1.0), (1.0, 1.0)), "tanh")
    assert activation_of(tanh) == "tanh" and activation_of(None) == "relu"
    # Equal pairs with another activation are another static argument.
    assert tanh != layer_scales(sizes, "standard", "erf")
    assert hash(tanh) != hash(layer_scales(sizes, "standard", "erf"))
    ntk = layer_scales(sizes, "ntk", "gelu")
    np.testing.assert_allclose(ntk, [[2 / 4, 0.01], [2 / 6, 0.01]])
    assert pickle.loads(pickle.dumps(ntk)) == ntk
    leaves, tree = jax.tree.flatten(ntk)
    assert len(leaves) == 4 and jax.tree.unflatten(tree, leaves) == ntk
    with pytest.raises(ValueError, match="`activation` must be one of 'relu', 'tanh'"):
        layer_scales(sizes, "standard", "sigmoid")


# --------------------------------------------------------------------------------------
# The estimators
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:200] / 16).astype(np.float32), y[:200]


def numpy_forward(coefs, intercepts, X, name):
    phi = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
           "identity": lambda z: z}[name]
    h = X.astype(np.float64)
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        h = phi(h @ W + b)
    return h @ coefs[-1] + intercepts[-1]


@pytest.mark.parametrize("name", ["tanh", "identity"])
def test_network_prediction_runs_the_activation(digits, name):
    """Without an NTK phase, predict_proba is the softmax of the fitted network with
    its activation, computed here in numpy."""
    X, y = digits
    clf = HybridNTKClassifier(hidden_layer_sizes=8, activation=name, max_sgd_epochs=3,
                              switch=None, ntk_phase=None, random_state=0).fit(X, y)
    assert clf.activation_ == name
    logits = numpy_forward(clf.coefs_, clf.intercepts_, X, name)
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), proba / proba.sum(axis=1, keepdims=True),
                               atol=1e-5)
    # Prediction uses the fitted activation, not the current parameter.
    before = clf.predict_proba(X)
    clf.set_params(activation="relu")
    np.testing.assert_array_equal(clf.predict_proba(X), before)


@pytest.mark.parametrize("phase, name", [(None, "erf"), ("frozen_jacobian", "gelu"),
                                         ("linearized", "tanh"), ("linearized", "erf"),
                                         ("kernel", "gelu")])
def test_every_phase_predicts_what_it_recorded(digits, phase, name):
    """A fit through each phase with a non-ReLU activation: the final training loss of
    the history is the log-loss of predict_proba on the training rows (no validation
    split), so the prediction path and the training path run the same network."""
    X, y = digits
    clf = HybridNTKClassifier(hidden_layer_sizes=(8,), activation=name, max_sgd_epochs=3,
                              switch="fixed_epoch", switch_epoch=3, ntk_phase=phase,
                              ntk_epochs=3, validation_fraction=None, kernel_ridge=1e-3,
                              random_state=0)
    clf.fit(X, y)
    recorded = clf.history_["train_loss"][-1]
    assert log_loss(y, clf.predict_proba(X)) == pytest.approx(recorded, rel=1e-4)


def test_regressor_kernel_phase_with_an_activation(digits):
    X, _ = digits
    y = np.sin(X[:, 10] * 3) + X[:, 20]
    reg = HybridNTKRegressor(hidden_layer_sizes=8, activation="erf", switch="fixed_epoch",
                             switch_epoch=2, max_sgd_epochs=2, ntk_phase="kernel",
                             validation_fraction=None, random_state=0).fit(X, y)
    assert reg.activation_ == "erf"
    restored = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(restored.predict(X), reg.predict(X))
    assert clone(reg).get_params()["activation"] == "erf"


def test_activation_and_hidden_layer_sizes_are_validated(digits):
    X, y = digits
    with pytest.raises(InvalidParameterError, match="activation"):
        HybridNTKClassifier(activation="sigmoid").fit(X, y)
    with pytest.raises(InvalidParameterError, match="hidden_layer_sizes"):
        HybridNTKClassifier(hidden_layer_sizes=0).fit(X, y)
    with pytest.raises(ValueError, match="tuple of positive integers"):
        HybridNTKClassifier(hidden_layer_sizes=(8, 0)).fit(X, y)


def test_int_hidden_layer_sizes_is_one_layer(digits):
    X, y = digits
    kwargs = dict(max_sgd_epochs=1, switch=None, ntk_phase=None, random_state=0)
    as_int = HybridNTKClassifier(hidden_layer_sizes=8, **kwargs).fit(X, y)
    as_tuple = HybridNTKClassifier(hidden_layer_sizes=(8,), **kwargs).fit(X, y)
    assert [W.shape for W in as_int.coefs_] == [(64, 8), (8, 10)]
    for a, b in zip(as_int.coefs_, as_tuple.coefs_):
        np.testing.assert_array_equal(a, b)
    linear = HybridNTKClassifier(hidden_layer_sizes=(), **kwargs).fit(X, y)
    assert [W.shape for W in linear.coefs_] == [(64, 10)]
