"""The matrix-free kernel phase against the dense eigendecomposition solution."""

import numpy as np
import pytest
import scipy.linalg

from skntk._kernel_flow import (
    eigendecompose_kernel,
    flow_coefficients,
    flow_outputs,
    flow_train_outputs,
)
from skntk._matrix_free import (
    TrainingKernel,
    cross_kernel_apply,
    fast_ntk_vector_product,
    krylov_kernel_flow,
    nystrom_preconditioner,
    solve_kernel_flow_matrix_free,
)
from skntk._mlp import init_mlp_params, mlp_forward
from skntk.ntk import empirical_ntk

N_TRAIN, N_NEW, N_FEATURES, N_CLASSES = 240, 50, 6, 3
LAYERS = (N_FEATURES, 32, 32, N_CLASSES)


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def random_params(layer_sizes, rng):
    """Glorot weights and small non-zero biases (so the bias terms are exercised)."""
    return [(W, (0.1 * rng.standard_normal(b.shape)).astype(np.float32))
            for W, b in init_mlp_params(layer_sizes, rng)]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.RandomState(0)
    params = random_params(LAYERS, rng)
    X = rng.standard_normal((N_TRAIN, N_FEATURES)).astype(np.float32)
    X_new = rng.standard_normal((N_NEW, N_FEATURES)).astype(np.float32)
    Y = np.eye(N_CLASSES)[rng.randint(N_CLASSES, size=N_TRAIN)]
    F0 = np.asarray(mlp_forward(params, X), dtype=np.float64)
    K_bar = np.asarray(empirical_ntk(params, X), dtype=np.float64) / N_CLASSES
    K_cross = np.asarray(empirical_ntk(params, X_new, X), dtype=np.float64) / N_CLASSES
    ridge = 0.1 * np.mean(np.diag(K_bar))
    lam = np.linalg.eigvalsh(K_bar)
    return {"params": params, "X": X, "X_new": X_new, "R": Y - F0, "F0": F0,
            "K_bar": K_bar, "K_cross": K_cross, "ridge": ridge,
            # a short time (g almost linear) and a long one (g far from polynomial)
            "times": (N_TRAIN / lam[-1], 20 * N_TRAIN / np.median(lam))}


def dense_solution(problem, t, ridge):
    """Coefficients, train update K_bar A and test update K_bar(x, X) A, dense."""
    R = problem["R"]
    lam, V = eigendecompose_kernel(problem["K_bar"], ridge)
    A = flow_coefficients(lam, V, R, t, N_TRAIN)
    train = flow_train_outputs(lam, V, R, problem["F0"], t, N_TRAIN, ridge) - problem["F0"]
    test = flow_outputs(problem["K_cross"], A, np.zeros((N_NEW, N_CLASSES)))
    return A, train, test


@pytest.fixture(scope="module")
def operator(problem):
    return TrainingKernel(problem["params"], problem["X"], N_CLASSES, problem["ridge"],
                          block_size=100)


@pytest.fixture(scope="module")
def operator_no_ridge(problem):
    return TrainingKernel(problem["params"], problem["X"], N_CLASSES, 0.0, block_size=100)


# --------------------------------------------------------------------------------------
# The kernel-block product
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [(5, 3), (5, 8, 9, 10, 2)])
def test_fast_product_matches_dense_kernel(layers):
    """No hidden layer (only the output term) and three (the general signal recursion)."""
    rng = np.random.RandomState(1)
    params = random_params(layers, rng)
    X = rng.standard_normal((130, layers[0])).astype(np.float32)
    X2 = rng.standard_normal((70, layers[0])).astype(np.float32)
    V = rng.standard_normal((70, 4))
    K = np.asarray(empirical_ntk(params, X, X2), dtype=np.float64)
    out = np.asarray(fast_ntk_vector_product(params, X, V, X2=X2, block_size=32))
    assert out.shape == (130, 4)
    assert rel_err(out, K @ V) < 1e-5


def test_fast_product_square_kernel(problem):
    """Two hidden layers, ``X2=None``, blocks that do not divide the samples, a vector."""
    rng = np.random.RandomState(2)
    V = rng.standard_normal((N_TRAIN, N_CLASSES))
    out = np.asarray(fast_ntk_vector_product(problem["params"], problem["X"], V,
                                             block_size=64))
    assert out.shape == (N_TRAIN, N_CLASSES)
    assert rel_err(out / N_CLASSES, problem["K_bar"] @ V) < 1e-5
    v = np.asarray(fast_ntk_vector_product(problem["params"], problem["X"], V[:, 0],
                                           block_size=1000))
    assert v.shape == (N_TRAIN,)
    assert rel_err(v / N_CLASSES, problem["K_bar"] @ V[:, 0]) < 1e-5


def test_operator_stored_and_recomputed_factors_agree(problem, operator):
    rng = np.random.RandomState(2)
    V = rng.standard_normal((N_TRAIN, N_CLASSES))
    recomputing = TrainingKernel(problem["params"], problem["X"], N_CLASSES, problem["ridge"],
                                 block_size=100, max_bytes=0)
    assert operator.stores_factors and not recomputing.stores_factors
    expected = problem["K_bar"] @ V + problem["ridge"] * V
    assert rel_err(operator.matvec(V), expected) < 1e-5
    assert rel_err(recomputing.matvec(V), expected) < 1e-5
    diagonal = np.diag(problem["K_bar"])
    assert rel_err(operator.diagonal(), diagonal) < 1e-6
    assert rel_err(recomputing.diagonal(), diagonal) < 1e-6


def test_nystrom_preconditioner_captures_top_eigenvalues(problem, operator):
    pre = nystrom_preconditioner(operator, 40)
    top = np.linalg.eigvalsh(problem["K_bar"])[::-1][:5]
    assert pre.U.shape == (N_TRAIN, pre.eigenvalues.size)
    np.testing.assert_allclose(pre.U.T @ pre.U, np.eye(pre.eigenvalues.size), atol=1e-8)
    # Nyström approximations are below the kernel (K̂ ≼ K), so are their eigenvalues.
    assert np.all(np.diff(pre.eigenvalues) <= 0) and np.all(pre.eigenvalues > 0)
    assert np.all(pre.eigenvalues[:5] <= top * (1 + 1e-5))
    assert pre.eigenvalues[0] > 0.95 * top[0]


# --------------------------------------------------------------------------------------
# t = inf: conjugate gradients
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rank", [0, 30])
def test_cg_matches_dense_kernel_regression(problem, operator, rank):
    ridge = problem["ridge"]
    A, info = solve_kernel_flow_matrix_free(
        problem["params"], problem["X"], problem["R"], np.inf, ridge, N_CLASSES,
        tol=1e-5, preconditioner_rank=rank, operator=operator)
    A_dense, train, test = dense_solution(problem, np.inf, ridge)
    assert info["method"] == "cg" and info["converged"]
    assert 0 < info["iterations"] <= 500
    assert info["iterations_per_output"].shape == (N_CLASSES,)
    assert np.all(info["residual_norm"] <= 1e-5)
    assert info["residual_history"].shape == (info["iterations"], N_CLASSES)
    assert info["kernel_products"] >= info["iterations"] + info["sketch_products"]
    assert A.shape == (N_TRAIN, N_CLASSES) and A.dtype == np.float64
    assert rel_err(info["train_update"], train) < 1e-4
    assert rel_err(problem["K_bar"] @ A, train) < 1e-4
    test_mf = cross_kernel_apply(problem["params"], problem["X_new"], problem["X"], A,
                                 N_CLASSES, block_size=64)
    assert rel_err(test_mf, test) < 1e-4


def test_preconditioner_reduces_iterations(problem, operator):
    args = (problem["params"], problem["X"], problem["R"], np.inf, problem["ridge"], N_CLASSES)
    _, plain = solve_kernel_flow_matrix_free(*args, preconditioner_rank=0, operator=operator)
    _, pre = solve_kernel_flow_matrix_free(*args, preconditioner_rank=30, operator=operator)
    assert pre["iterations"] < plain["iterations"]
    print(f"CG iterations: {plain['iterations']} plain, {pre['iterations']} with a rank-30 "
          f"Nyström preconditioner (+{pre['sketch_products']} sketch products)")


def test_cg_reports_non_convergence(problem, operator):
    _, info = solve_kernel_flow_matrix_free(
        problem["params"], problem["X"], problem["R"], np.inf, problem["ridge"], N_CLASSES,
        max_iter=3, preconditioner_rank=0, operator=operator)
    assert info["iterations"] == 3 and not info["converged"]
    assert np.all(info["residual_norm"] > 1e-6)


# --------------------------------------------------------------------------------------
# Finite t: Lanczos
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("with_ridge", [False, True])
def test_lanczos_matches_dense_flow(problem, operator, operator_no_ridge, which, with_ridge):
    t = problem["times"][which]
    ridge = problem["ridge"] if with_ridge else 0.0
    A, info = solve_kernel_flow_matrix_free(
        problem["params"], problem["X"], problem["R"], t, ridge, N_CLASSES, tol=1e-6,
        operator=operator if with_ridge else operator_no_ridge)
    _, train, test = dense_solution(problem, t, ridge)
    assert info["method"] == "lanczos" and info["converged"]
    assert 0 < info["iterations"] <= 500
    assert info["residual_history"].shape == (info["iterations"], N_CLASSES)
    assert rel_err(info["train_update"], train) < 1e-4
    assert rel_err(problem["K_bar"] @ A, train) < 1e-4
    test_mf = cross_kernel_apply(problem["params"], problem["X_new"], problem["X"], A,
                                 N_CLASSES, block_size=64)
    assert rel_err(test_mf, test) < 1e-4


def test_one_krylov_flow_serves_every_time(problem, operator):
    """Built for the largest time, the decomposition gives every smaller one."""
    t_max = problem["times"][1]
    flow = krylov_kernel_flow(problem["params"], problem["X"], problem["R"], t_max,
                              problem["ridge"], N_CLASSES, tol=1e-6, operator=operator)
    assert flow.info["converged"]
    for t in (0.1 * t_max, 0.5 * t_max, t_max):
        A, train_mf, estimate = flow.evaluate(t)
        _, train, test = dense_solution(problem, t, problem["ridge"])
        assert rel_err(train_mf, train) < 1e-4
        assert rel_err(problem["K_cross"] @ A, test) < 1e-4
        assert np.all(estimate < 1e-4)


def test_train_update_is_the_matrix_exponential(problem, operator_no_ridge):
    """With ρ = 0 the train outputs are Y + exp(-t K_bar/N)(F0 - Y) (Lee et al. 2019)."""
    t = problem["times"][1]
    _, info = solve_kernel_flow_matrix_free(
        problem["params"], problem["X"], problem["R"], t, 0.0, N_CLASSES, tol=1e-6,
        operator=operator_no_ridge)
    R = problem["R"]
    expected = R - scipy.linalg.expm(-t * problem["K_bar"] / N_TRAIN) @ R
    assert rel_err(info["train_update"], expected) < 1e-4


# --------------------------------------------------------------------------------------
# Edge cases and validation
# --------------------------------------------------------------------------------------

def test_zero_time_and_zero_residual(problem, operator):
    args = (problem["params"], problem["X"])
    A, info = solve_kernel_flow_matrix_free(*args, problem["R"], 0.0, problem["ridge"],
                                            N_CLASSES, operator=operator)
    assert not A.any() and not info["train_update"].any() and info["iterations"] == 0
    R = problem["R"].copy()
    R[:, 1] = 0.0
    for t in (np.inf, problem["times"][0]):
        A, info = solve_kernel_flow_matrix_free(*args, R, t, problem["ridge"], N_CLASSES,
                                                preconditioner_rank=0, operator=operator)
        assert info["converged"] and not A[:, 1].any()


@pytest.mark.parametrize("kwargs, match", [
    ({"t": -1.0}, "flow time"),
    ({"t": np.nan}, "flow time"),
    ({"ridge": -1.0}, "ridge"),
    ({"tol": 0.0}, "tol"),
    ({"max_iter": 0}, "max_iter"),
    ({"operator": "other"}, "operator was built for"),
    ({"residual": np.ones((N_TRAIN - 1, N_CLASSES))}, "residual must have shape"),
    ({"residual": np.full((N_TRAIN, N_CLASSES), np.nan)}, "NaN"),
])
def test_solver_validates_inputs(problem, kwargs, match):
    args = {"t": np.inf, "ridge": 1.0, "residual": problem["R"], **kwargs}
    if args.get("operator") == "other":
        args["operator"] = TrainingKernel(problem["params"], problem["X"], N_CLASSES, 2.0)
    with pytest.raises(ValueError, match=match):
        solve_kernel_flow_matrix_free(
            problem["params"], problem["X"], args.pop("residual"), args.pop("t"),
            args.pop("ridge"), N_CLASSES, **args)
