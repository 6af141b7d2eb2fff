"""The generic kernel path (any ``apply_fn``) against the MLP's layer-wise engine and
against explicit Jacobians."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from skntk._mlp import mlp_forward
from skntk._parameterization import layer_scales, scale_params
from skntk.ntk import (empirical_ntk, empirical_ntk_reference, model_ntk,
                       model_ntk_vector_product, ntk_vector_product)

from ._models import mlp_problem, rel_error

SIZES = (4, 6, 5, 3)


def problem(dtype, seed=0):
    return mlp_problem(SIZES, 11, 7, dtype, seed)


def ntk_parameterized_gelu_mlp(omega, X):
    """The MLP of the NTK parameterisation written in its trained coordinates."""
    return mlp_forward(scale_params(omega, layer_scales(SIZES, "ntk", "gelu"), 0.5), X, "gelu")


CASES = [(mlp_forward, "standard", "relu"), (ntk_parameterized_gelu_mlp, "ntk", "gelu")]


def model_params(params, parameterization, activation):
    return scale_params(params, layer_scales(SIZES, parameterization, activation), -0.5)


@pytest.mark.parametrize("apply_fn, parameterization, activation", CASES)
def test_generic_path_is_the_layerwise_path_float32(apply_fn, parameterization, activation):
    params, X1, X2 = problem(jnp.float32)
    theta = model_params(params, parameterization, activation)
    kwargs = dict(parameterization=parameterization, activation=activation)
    for other, implementation in ((None, "jacobian"), (X2, "jacobian"), (X2, "matrix_free")):
        K = model_ntk(apply_fn, theta, X1, other, block_size=4, implementation=implementation)
        assert K.dtype == jnp.float32
        assert rel_error(K, empirical_ntk(params, X1, other, **kwargs)) < 1e-5, implementation
    assert rel_error(model_ntk(apply_fn, theta, X1, X2, block_size=4, per_logit=True),
                     empirical_ntk(params, X1, X2, per_logit=True, **kwargs)) < 1e-5
    V = np.random.RandomState(1).standard_normal((X2.shape[0], 2))
    assert rel_error(model_ntk_vector_product(apply_fn, theta, X1, V, X2=X2, block_size=3),
                     ntk_vector_product(params, X1, V, X2=X2, **kwargs)) < 1e-5
    v = model_ntk_vector_product(apply_fn, theta, X1, V[:, 0], X2=X2, block_size=3)
    assert v.shape == (X1.shape[0],)


@pytest.mark.parametrize("apply_fn, parameterization, activation", CASES)
def test_generic_path_is_the_layerwise_path_float64(apply_fn, parameterization, activation):
    with jax.enable_x64(True):
        params, X1, X2 = problem(jnp.float64)
        theta = model_params(params, parameterization, activation)
        layerwise = empirical_ntk(params, X1, X2, parameterization=parameterization,
                                  activation=activation)
        for implementation in ("jacobian", "matrix_free"):
            K = model_ntk(apply_fn, theta, X1, X2, block_size=4, implementation=implementation)
            assert K.dtype == jnp.float64
            assert rel_error(K, layerwise) < 1e-10, implementation


def small_convnet(params, X):
    """A model that is no MLP: one 3x3 convolution over 5x5 images given as flat rows,
    tanh, global average pooling and a dense layer; ``params`` a dict."""
    images = X.reshape(-1, 1, 5, 5)
    h = jax.lax.conv_general_dilated(images, params["conv"], (1, 1), "SAME")
    h = jnp.tanh(h + params["bias"][None, :, None, None]).mean(axis=(2, 3))
    return h @ params["dense"]


def test_any_model_matches_explicit_jacobians():
    rng = np.random.RandomState(3)
    params = {"conv": jnp.asarray(rng.standard_normal((4, 1, 3, 3)), jnp.float32),
              "bias": jnp.asarray(rng.standard_normal(4), jnp.float32),
              "dense": jnp.asarray(rng.standard_normal((4, 2)), jnp.float32)}
    X1 = jnp.asarray(rng.standard_normal((9, 25)), jnp.float32)
    X2 = jnp.asarray(rng.standard_normal((5, 25)), jnp.float32)
    reference = empirical_ntk_reference(small_convnet, params, X1, X2)
    for implementation in ("jacobian", "matrix_free"):
        K = model_ntk(small_convnet, params, X1, X2, block_size=4,
                      implementation=implementation)
        assert rel_error(K, reference) < 1e-5, implementation
    assert rel_error(model_ntk(small_convnet, params, X1, block_size=4, per_logit=True),
                     empirical_ntk_reference(small_convnet, params, X1, per_logit=True)) < 1e-5
    V = np.linspace(-1.0, 1.0, 5)
    np.testing.assert_allclose(model_ntk_vector_product(small_convnet, params, X1, V, X2=X2,
                                                        block_size=2),
                               np.asarray(reference) @ V, rtol=1e-4, atol=1e-4)


def test_memory_is_checked_before_the_kernel_is_built():
    params, X1, X2 = problem(jnp.float32)
    with pytest.raises(ValueError, match=r"kernel of shape \(11, 7\).*working memory.*"
                                         r"model_ntk_vector_product"):
        model_ntk(mlp_forward, params, X1, X2, max_bytes=1000)
    with pytest.raises(ValueError, match=r"kernel-vector product.*smaller `block_size`"):
        model_ntk_vector_product(mlp_forward, params, X1, np.ones(7), X2=X2, max_bytes=100)
    n_bytes = 4 * 11 * 7
    assert model_ntk(mlp_forward, params, X1, X2, max_bytes=n_bytes + 10**6).shape == (11, 7)


def test_bad_inputs_are_refused():
    params, X1, X2 = problem(jnp.float32)
    with pytest.raises(TypeError, match="`X1` is a scipy sparse matrix"):
        model_ntk(mlp_forward, params, scipy.sparse.csr_matrix(np.asarray(X1)))
    with pytest.raises(ValueError, match="`X2` contains NaN"):
        model_ntk(mlp_forward, params, X1, np.full((2, SIZES[0]), math.nan))
    with pytest.raises(ValueError, match=r"`X2` must have shape \(n_samples, \*\(4,\)\)"):
        model_ntk(mlp_forward, params, X1, np.ones((2, 3)))
    with pytest.raises(ValueError, match="'layerwise' is the MLP's"):
        model_ntk(mlp_forward, params, X1, implementation="layerwise")
    with pytest.raises(ValueError, match="traced kernel only"):
        model_ntk(mlp_forward, params, X1, per_logit=True, implementation="matrix_free")
    with pytest.raises(ValueError, match=r"`V` must have shape \(11,\)"):
        model_ntk_vector_product(mlp_forward, params, X1, np.ones(3))
