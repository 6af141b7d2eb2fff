"""The loss registry against automatic differentiation and scikit-learn's metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, r2_score

from skntk._losses import LOSSES, loss_and_score


def _problem(loss, seed=0, n=12, C=3):
    rng = np.random.RandomState(seed)
    f = rng.normal(size=(n, C))
    if loss.name == "cross_entropy":
        Y = np.eye(C)[rng.randint(C, size=n)]
    else:
        Y = rng.normal(size=(n, C)) * 2 + 1
    return f, Y, rng


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_line_derivatives_and_curvature_match_autodiff(name):
    loss = LOSSES[name]
    with jax.enable_x64(True):
        f, Y, rng = _problem(loss)
        u = rng.normal(size=f.shape)
        w = rng.uniform(0.5, 2.0, size=f.shape[0])
        scale = w / w.sum()
        grad = jax.grad(lambda g: jnp.sum(loss.per_sample(g, jnp.asarray(Y))))(
            jnp.asarray(f))
        np.testing.assert_allclose(loss.output_gradient(f, Y), grad, rtol=1e-12)

        def along(alpha):
            return jnp.sum(scale * loss.per_sample(f + alpha * u, Y))

        first, second = loss.line_derivatives(jnp.asarray(f), jnp.asarray(u), jnp.asarray(Y),
                                              jnp.asarray(scale))
        np.testing.assert_allclose(first, jax.grad(along)(0.0), rtol=1e-12)
        np.testing.assert_allclose(second, jax.grad(jax.grad(along))(0.0), rtol=1e-12)
        # The Hessian of one sample's loss in its outputs is at most the curvature bound.
        hessian = jax.hessian(lambda g: loss.per_sample(g[None], Y[:1])[0])(jnp.asarray(f[0]))
        assert np.linalg.eigvalsh(np.asarray(hessian)).max() <= loss.curvature + 1e-12


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_mean_loss_and_score_against_numpy_and_sklearn(name):
    loss = LOSSES[name]
    f, Y, rng = _problem(loss, seed=1)
    w = (rng.uniform(size=f.shape[0]) > 0.3).astype(float)  # padding rows weigh zero
    with jax.enable_x64(True):
        got_loss, got_score = loss_and_score(loss, jnp.asarray(f), jnp.asarray(Y),
                                             jnp.asarray(w))
    real = w > 0
    if name == "cross_entropy":
        p = np.exp(f - f.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        want_loss = -np.mean(np.log(p[real][Y[real] == 1]))
        want_score = accuracy_score(Y[real].argmax(1), f[real].argmax(1))
    else:
        want_loss = 0.5 * np.mean(np.sum((f[real] - Y[real]) ** 2, axis=1))
        want_score = r2_score(Y[real], f[real])
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(got_score, want_score, rtol=1e-12)


def test_r2_of_a_constant_output_follows_sklearn():
    loss = LOSSES["squared_error"]
    Y = np.column_stack([np.ones(5), np.arange(5.0)])
    for f in (Y.copy(), Y + 0.5):
        with jax.enable_x64(True):
            got = loss.score(jnp.asarray(f), jnp.asarray(Y))
        np.testing.assert_allclose(got, r2_score(Y, f), rtol=1e-12)
