"""NTK-phase steps against explicit-Jacobian computations in float64."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
from skntk._phases import frozen_jacobian_step, linearized_logits, linearized_step


def _tiny(seed=0, n=9, d=4, C=3):
    rng = np.random.RandomState(seed)
    params_star = params_to_jax(init_mlp_params((d, 6, 5, C), rng, np.float64))
    params = jax.tree_util.tree_map(lambda p: p + 0.05 * rng.normal(size=p.shape), params_star)
    X = jnp.asarray(rng.normal(size=(n, d)))
    Y = jnp.asarray(np.eye(C)[rng.randint(C, size=n)])
    return params_star, params, X, Y


def _explicit_jacobian(params, X):
    """J of shape (n, C, P), one row per sample and logit."""
    flat, unravel = ravel_pytree(params)
    J = jax.jacrev(lambda v: mlp_forward(unravel(v), X))(flat)
    return np.asarray(J), flat, unravel


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_frozen_jacobian_step_equals_explicit_jacobian():
    with jax.enable_x64(True):
        params_star, params, X, Y = _tiny()
        lr = 0.7
        J, _, _ = _explicit_jacobian(params_star, X)
        flat, unravel = ravel_pytree(params)
        residual = _softmax(np.asarray(mlp_forward(params, X))) - np.asarray(Y)
        want = np.asarray(flat) - lr * np.einsum("ncp,nc->p", J, residual) / X.shape[0]
        got, _ = ravel_pytree(frozen_jacobian_step(params, params_star, X, Y, lr))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_linearized_model_equals_network_at_switch_point_and_is_linear():
    with jax.enable_x64(True):
        params_star, params, X, _ = _tiny(seed=1)
        np.testing.assert_allclose(linearized_logits(params_star, params_star, X),
                                   mlp_forward(params_star, X), rtol=1e-13)
        J, flat_star, _ = _explicit_jacobian(params_star, X)
        flat, _ = ravel_pytree(params)
        want = np.asarray(mlp_forward(params_star, X)) + np.einsum(
            "ncp,p->nc", J, np.asarray(flat - flat_star))
        np.testing.assert_allclose(linearized_logits(params_star, params, X), want, rtol=1e-12)


def test_linearized_first_step_equals_explicit_jacobian():
    with jax.enable_x64(True):
        params_star, params, X, Y = _tiny(seed=2)
        lr = 0.3
        J, flat_star, _ = _explicit_jacobian(params_star, X)
        flat, _ = ravel_pytree(params)
        f_lin = np.asarray(mlp_forward(params_star, X)) + np.einsum(
            "ncp,p->nc", J, np.asarray(flat - flat_star))
        residual = _softmax(f_lin) - np.asarray(Y)
        want = np.asarray(flat) - lr * np.einsum("ncp,nc->p", J, residual) / X.shape[0]
        got, _ = ravel_pytree(linearized_step(params, params_star, X, Y, lr))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
