"""The SGD phase's optimisers against optax and the update formulas, and the
prediction methods added beside them (predict_log_proba, predict_variance's error)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.exceptions import ConvergenceWarning

from skntk import HybridNTKClassifier, HybridNTKRegressor
from skntk._losses import CROSS_ENTROPY, mean_loss
from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk._sgd import PLAIN_SGD, Optimizer, epoch_order, optimizer_epoch, sgd_epoch


def _problem(n=12, d=4, C=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = np.eye(C, dtype=np.float32)[rng.randint(C, size=n)]
    return params_to_jax(init_mlp_params((d, 5, C), rng)), jnp.asarray(X), jnp.asarray(Y)


def _leaves(tree):
    return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree_util.tree_leaves(tree)])


def _gradient(params, X, Y, alpha=0.0):
    def objective(p):
        penalty = alpha / (2 * X.shape[0]) * sum(jnp.sum(W ** 2) for W, _ in p)
        return mean_loss(CROSS_ENTROPY, mlp_forward(p, X), Y) + penalty
    return jax.grad(objective)(params)


def _two_batches(optimizer, lr):
    """Two batches of 6 rows in a fixed order, by optimizer_epoch."""
    params, X, Y = _problem()
    order = np.arange(12, dtype=np.int32)
    got, _ = optimizer_epoch(params, optimizer.init(params), X, Y, order, 12, lr, 6,
                             optimizer=optimizer)
    return params, X, Y, got


@pytest.mark.parametrize("optimizer, reference", [
    (Optimizer("adam"), optax.adam),
    (Optimizer("sgd", momentum=0.9, nesterovs_momentum=False),
     lambda lr: optax.sgd(lr, momentum=0.9)),
    (Optimizer("sgd", momentum=0.9, nesterovs_momentum=True),
     lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)),
    (Optimizer("sgd", alpha=0.5), optax.sgd),
])
def test_epoch_matches_an_optax_reference_loop(optimizer, reference):
    lr = 0.01
    params, X, Y, got = _two_batches(optimizer, lr)
    transformation = reference(lr)
    state, want = transformation.init(params), params
    for rows in (slice(0, 6), slice(6, 12)):
        grads = _gradient(want, X[rows], Y[rows], optimizer.alpha)
        updates, state = transformation.update(grads, state, want)
        want = optax.apply_updates(want, updates)
    np.testing.assert_allclose(_leaves(got), _leaves(want), rtol=1e-5, atol=1e-7)


def test_adam_and_momentum_follow_their_update_formulas():
    lr, mu = 0.01, 0.9
    params, X, Y = _problem()
    g1 = _gradient(params, X[:6], Y[:6])

    # Adam's first step: m = (1 - b1) g, v = (1 - b2) g^2, bias-corrected to g and g^2:
    # theta - lr g / (|g| + eps) (Kingma and Ba 2015, algorithm 1).
    order = np.arange(12, dtype=np.int32)
    adam = Optimizer("adam")
    got, _ = optimizer_epoch(params, adam.init(params), X, Y, order, 6, lr, 6, optimizer=adam)
    want = jax.tree_util.tree_map(lambda p, g: p - lr * g / (jnp.abs(g) + 1e-8), params, g1)
    np.testing.assert_allclose(_leaves(got), _leaves(want), rtol=1e-5, atol=1e-6)

    # Heavy ball, two steps: v1 = g1, v2 = mu v1 + g2; theta2 = theta - lr (v1 + v2).
    heavy = Optimizer("sgd", momentum=mu, nesterovs_momentum=False)
    got, _ = optimizer_epoch(params, heavy.init(params), X, Y, order, 12, lr, 6,
                             optimizer=heavy)
    theta1 = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, g1)
    g2 = _gradient(theta1, X[6:], Y[6:])
    want = jax.tree_util.tree_map(lambda p, a, b: p - lr * (a + mu * a + b), params, g1, g2)
    np.testing.assert_allclose(_leaves(got), _leaves(want), rtol=1e-5, atol=1e-7)

    # Nesterov, one step: v1 = g1, update g1 + mu v1.
    nesterov = Optimizer("sgd", momentum=mu, nesterovs_momentum=True)
    got, _ = optimizer_epoch(params, nesterov.init(params), X, Y, order, 6, lr, 6,
                             optimizer=nesterov)
    want = jax.tree_util.tree_map(lambda p, g: p - lr * (1 + mu) * g, params, g1)
    np.testing.assert_allclose(_leaves(got), _leaves(want), rtol=1e-5, atol=1e-7)


def test_plain_sgd_is_bit_identical_to_the_sgd_epoch():
    params, X, Y = _problem()
    order = epoch_order(np.random.RandomState(0), 12, 12, 5)
    got, _ = optimizer_epoch(params, PLAIN_SGD.init(params), X, Y, order, 12, 0.1, 5)
    want = params
    for start in range(0, 12, 5):
        rows = order[start:min(start + 5, 12)]  # the padding slots weigh 0
        grads = _gradient(want, X[rows], Y[rows])
        want = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, want, grads)
    np.testing.assert_allclose(_leaves(got), _leaves(want), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(_leaves(got), _leaves(sgd_epoch(params, X, Y, order, 12,
                                                                  0.1, 5)))


def test_estimator_carries_the_optimizer_state_across_epochs():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    params = dict(hidden_layer_sizes=(8,), max_sgd_epochs=3, switch=None, ntk_phase=None,
                  random_state=0, validation_fraction=None, batch_size=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adam = HybridNTKClassifier(solver="adam", learning_rate=1e-3, **params).fit(X, y)
        momentum = HybridNTKClassifier(momentum=0.9, **params).fit(X, y)
        plain = HybridNTKClassifier(**params).fit(X, y)
        moved = [np.abs(est.coefs_[0] - est.init_coefs_[0]).max()
                 for est in (adam, momentum, plain)]
    # Adam's steps are about learning_rate per coordinate and batch: 12 batches.
    assert 0.5 * 12e-3 < moved[0] <= 12e-3 * 1.01
    assert moved[1] > 2 * moved[2]  # momentum 0.9 accelerates the same gradients


# ------------------------------------------------------------ predictions

@pytest.fixture(scope="module")
def iris_fit():
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=5, ntk_epochs=5,
                                  random_state=0).fit(X, y)
    return clf, X


def test_predict_log_proba_is_the_log_of_predict_proba(iris_fit):
    clf, X = iris_fit
    log_proba = clf.predict_log_proba(X)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(log_proba, np.log(proba), rtol=1e-12, atol=1e-12)
    assert np.all(np.isfinite(log_proba))


def test_predict_log_proba_stays_finite_where_probabilities_underflow(iris_fit, monkeypatch):
    clf, X = iris_fit
    logits = np.array([[0.0, -800.0, 1.0], [np.inf, 0.0, -np.inf]])
    monkeypatch.setattr(type(clf), "_outputs", lambda self, X: logits)
    log_proba = clf.predict_log_proba(X[:2])
    assert clf.predict_proba(X[:2])[0, 1] == 0.0
    assert log_proba[0, 1] == pytest.approx(-801.0 - np.log1p(np.exp(-1.0)))
    assert log_proba[1, 0] == 0.0 and log_proba[1, 2] == -np.inf


def test_predict_variance_names_the_phase_that_provides_it(iris_fit):
    clf, X = iris_fit
    assert not hasattr(clf, "predict_variance")
    with pytest.raises(AttributeError, match="ntk_phase='kernel'") as error:
        clf.predict_variance(X)
    assert error.value.__cause__ is None
    reg = HybridNTKRegressor(ntk_phase="linearized")
    assert not hasattr(reg, "predict_variance")
    with pytest.raises(AttributeError, match="ntk_phase='kernel' with ntk_epochs='auto'"):
        reg.predict_variance
    assert hasattr(HybridNTKRegressor(ntk_phase="kernel"), "predict_variance")
