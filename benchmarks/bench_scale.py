"""The matrix-free ``"kernel"`` NTK phase at scale: N = 50000 training samples.

Run ``python benchmarks/bench_scale.py`` (about 4-7 minutes on 2 cores; ``--n-samples``
makes a quicker run). The dense phase would need the 50000 x 50000 kernel (9.3 GiB in
float32, twice that for its eigenvectors); here nothing of size N x N is formed:
kernel regression (``ntk_epochs=inf``) is solved by conjugate gradients with a
randomized Nyström preconditioner, every product with the kernel goes through the
layer-wise low-rank Hadamard identity of :mod:`skntk._matrix_free`.

Problem: standard-normal inputs with 64 features, 10 classes whose labels are the
argmax of a fixed random linear map of the inputs, a ReLU MLP with layers (256, 256)
and Glorot-normal weights (``skntk._mlp.init_mlp_params``), float32. The ridge is
``ridge_scale`` times the mean of ``diag(K_bar)`` (``ridge_scale = 1`` by default: it
bounds the condition number of ``K_bar + ρI`` by about 1 + λ_max / ρ).

A first section times the SGD epoch on 1, 2 and 4 virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count``), to show the data-parallel
path; ``--devices-only`` runs just that.

Reported: wall-clock times of each step (compilation included: this is what a user
waits for), CG iterations, kernel-block products, final relative residuals, and the
peak resident memory of the process (``ru_maxrss``; the target is under 4 GiB).
"""

import argparse
import resource
import time

import numpy as np

N_FEATURES = 64
N_CLASSES = 10
HIDDEN = (256, 256)
MEMORY_LIMIT_GIB = 4.0


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


class Timer:
    """Collects wall-clock times of named steps."""

    def __init__(self):
        self.times = {}

    def __call__(self, name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = time.perf_counter() - start
        return out


def make_problem(n_samples, n_new, seed=0):
    """Inputs, one-hot targets and Glorot parameters of the generated problem."""
    import jax.numpy as jnp

    from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax

    rng = np.random.RandomState(seed)
    teacher = rng.standard_normal((N_FEATURES, N_CLASSES))
    X = rng.standard_normal((n_samples + n_new, N_FEATURES)).astype(np.float32)
    y = np.argmax(X @ teacher, axis=1)
    params = params_to_jax(init_mlp_params((N_FEATURES, *HIDDEN, N_CLASSES), rng))
    X_train, X_new = jnp.asarray(X[:n_samples]), jnp.asarray(X[n_samples:])
    Y = np.eye(N_CLASSES)[y[:n_samples]]
    F0 = np.asarray(mlp_forward(params, X_train), dtype=np.float64)
    return {"params": params, "X": X_train, "X_new": X_new, "y_new": y[n_samples:],
            "Y": Y, "F0": F0}


def kernel_phase_section(problem, ridge_scale, rank, tol, max_iter, timer):
    """Build the operator, choose the ridge, solve ``(K_bar + ρI) A = Y - F0`` by PCG."""
    from skntk._matrix_free import TrainingKernel, solve_kernel_flow_matrix_free

    params, X = problem["params"], problem["X"]
    n = X.shape[0]
    probe = timer("factors", TrainingKernel, params, X, N_CLASSES, 0.0)
    mean_diag = timer("diagonal", probe.diagonal).mean()
    ridge = ridge_scale * mean_diag
    operator = probe.with_ridge(ridge)
    del probe
    A, info = timer("solve", solve_kernel_flow_matrix_free, params, X,
                    problem["Y"] - problem["F0"], np.inf, ridge, N_CLASSES, tol=tol,
                    max_iter=max_iter, preconditioner_rank=rank, operator=operator)
    products = info["kernel_products"]
    train_acc = np.mean(np.argmax(problem["F0"] + info["train_update"], axis=1)
                        == np.argmax(problem["Y"], axis=1))
    print(f"Matrix-free kernel phase, t = inf: N = {n}, {N_FEATURES} features, "
          f"{N_CLASSES} classes, layers {HIDDEN}, float32")
    print(f"stored layer factors       {operator.factor_bytes / 1024**2:8.0f} MiB "
          f"(the dense kernel would be {n * n * 4 / 1024**3:.1f} GiB)")
    print(f"ridge                      {ridge:8.3f}  = {ridge_scale:g} x mean diag(K_bar) "
          f"({mean_diag:.3f})")
    print(f"preconditioner             Nyström, rank {info['preconditioner_rank']} "
          f"({info['sketch_products']} kernel-block products)")
    print(f"CG iterations              {info['iterations']:8d}  (tol {tol:g}, restarts "
          f"{info['restarts']}, per class {info['iterations_per_output'].min()}-"
          f"{info['iterations_per_output'].max()})")
    print(f"kernel-block products      {products:8d}  (10 columns each, incl. sketch and "
          "the final true-residual check)")
    print(f"relative residual          {info['residual_norm'].max():8.2e}  (max over classes, "
          f"recomputed; converged: {info['converged']})")
    print(f"train accuracy f_inf(X)    {train_acc:8.4f}")
    print(f"time: factors {timer.times['factors']:.1f} s, diagonal "
          f"{timer.times['diagonal']:.1f} s, solve {timer.times['solve']:.1f} s "
          f"({timer.times['solve'] / products:.2f} s per product, compilation included)")
    print()
    return A


def prediction_section(problem, coefficients, timer):
    """Outputs on new samples, ``f_0(x) + K_bar(x, X) A``, block by block."""
    from skntk._matrix_free import cross_kernel_apply
    from skntk._mlp import mlp_forward

    params, X, X_new = problem["params"], problem["X"], problem["X_new"]
    update = timer("predict", cross_kernel_apply, params, X_new, X, coefficients, N_CLASSES)
    logits = np.asarray(mlp_forward(params, X_new), dtype=np.float64) + update
    accuracy = np.mean(np.argmax(logits, axis=1) == problem["y_new"])
    print(f"Prediction on {X_new.shape[0]} new samples: {timer.times['predict']:.1f} s "
          f"(cross kernel never formed), test accuracy {accuracy:.4f}")
    print()


def memory_section(timer):
    peak = _peak_rss_gib()
    verdict = "OK" if peak < MEMORY_LIMIT_GIB else "OVER THE LIMIT"
    print(f"Peak resident memory (ru_maxrss, whole process): {peak:.2f} GiB "
          f"(limit {MEMORY_LIMIT_GIB:g} GiB: {verdict})")
    print(f"Total wall time: {sum(timer.times.values()):.1f} s")


_DEVICE_WORKER = """
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
from skntk._devices import data_mesh, replicate
from skntk._mlp import init_mlp_params, params_to_jax
from skntk._sgd import epoch_order, sgd_epoch
rng = np.random.RandomState(0)
X = rng.normal(size=(20000, 64)).astype(np.float32)
Y = np.eye(10, dtype=np.float32)[rng.randint(10, size=20000)]
mesh = data_mesh()
p = replicate(params_to_jax(init_mlp_params((64, 256, 256, 10), rng)), mesh)
X, Y = replicate(jnp.asarray(X), mesh), replicate(jnp.asarray(Y), mesh)
orders = (epoch_order(rng, 20000, 20000, 256) for _ in range(100))
start = time.perf_counter()
jax.block_until_ready(sgd_epoch(p, X, Y, next(orders), 20000, 0.05, 256, mesh))
compile_s = time.perf_counter() - start
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    jax.block_until_ready(sgd_epoch(p, X, Y, next(orders), 20000, 0.05, 256, mesh))
    best = min(best, time.perf_counter() - start)
print(json.dumps({"devices": len(jax.devices()), "epoch_s": best, "compile_s": compile_s}))
"""


def sgd_devices_section(counts=(1, 2, 4)):
    """SGD epoch (20000 x 64, layers (256, 256), batch 256) on 1, 2 and 4 virtual CPU
    devices: the data-parallel code path, not a speed-up (the virtual devices share
    this machine's cores)."""
    import json
    import os
    import subprocess
    import sys

    print("SGD epoch on virtual CPU devices (20000 x 64, layers (256, 256), batch 256)")
    print(f"{'devices':>8} {'epoch s':>9} {'compile s':>10}")
    for count in counts:
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
        done = subprocess.run([sys.executable, "-c", _DEVICE_WORKER], env=env,
                              capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['devices']:>8} {r['epoch_s']:>9.3f} {r['compile_s']:>10.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=50000)
    parser.add_argument("--n-new", type=int, default=10000)
    parser.add_argument("--ridge-scale", type=float, default=1.0,
                        help="ridge as a multiple of mean diag(K_bar) (default 1)")
    parser.add_argument("--rank", type=int, default=200, help="Nyström preconditioner rank")
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--devices-only", action="store_true",
                        help="run only the SGD-epoch-on-virtual-devices section")
    args = parser.parse_args()

    sgd_devices_section()
    if args.devices_only:
        return
    timer = Timer()
    problem = timer("setup", make_problem, args.n_samples, args.n_new)
    coefficients = kernel_phase_section(problem, args.ridge_scale, args.rank, args.tol,
                                        args.max_iter, timer)
    prediction_section(problem, coefficients, timer)
    memory_section(timer)


if __name__ == "__main__":
    main()
