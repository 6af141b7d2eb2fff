"""Time and peak memory of the closed-form kernel phase for N = 500 ... 4000.

Run ``python benchmarks/bench_kernel.py``. Inputs are digits-like: standardised
digits rows, repeated with small Gaussian jitter beyond 1797 samples; a (128, 128)
network at initialisation, 10 classes, 20 NTK epochs. Each N runs in a fresh
subprocess; peak memory is the process's maximum resident set size
(``ru_maxrss``) minus its value before the phase starts. Times are wall seconds.
"""

import json
import resource
import subprocess
import sys
import time

import numpy as np

SIZES = (500, 1000, 2000, 4000)


def digits_like(n, seed=0):
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.RandomState(seed)
    idx = rng.choice(len(X), n, replace=n > len(X))
    return (X[idx] + 0.05 * rng.normal(size=(n, X.shape[1]))).astype(np.float32), y[idx]


def measure(n):
    import jax
    import jax.numpy as jnp

    import skntk._kernel_solvers as kernel_solvers
    import skntk._phases as phases
    from skntk._mlp import init_mlp_params, params_to_jax

    X, y = digits_like(n)
    X, Y = jnp.asarray(X), jnp.asarray(np.eye(10, dtype=np.float32)[y])
    params = params_to_jax(init_mlp_params((64, 128, 128, 10), np.random.RandomState(0)))
    settings = phases.PhaseSettings(1.0, 20, 0.0, None)
    # Warm the compiled kernel blocks on a small input so compile time is not counted.
    phases.KernelPhase.start(params, X[:64], Y[:64], settings)
    timings = {"eigh": 0.0}
    eigendecompose = kernel_solvers.eigendecompose_kernel

    def timed_eigendecompose(*args, **kwargs):
        start = time.perf_counter()
        out = eigendecompose(*args, **kwargs)
        timings["eigh"] += time.perf_counter() - start
        return out

    kernel_solvers.eigendecompose_kernel = timed_eigendecompose
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    state = phases.KernelPhase.start(params, X, Y, settings)
    for epoch in phases.KernelPhase.epochs(settings):
        state = phases.KernelPhase.step(state, epoch, settings)
    jax.block_until_ready(state.train_logits)
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return {"n": n, "total_s": total, "eigh_s": timings["eigh"], "peak_mib": peak / 1024}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(measure(int(sys.argv[2]))))
        return
    print("Kernel phase (kernel build + one eigendecomposition + 20 epochs of outputs), "
          "layers (128, 128), 10 classes")
    header = f"{'N':>6} {'total s':>9} {'eigh s':>8} {'eigh share':>10} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for n in SIZES:
        out = subprocess.run([sys.executable, __file__, "--worker", str(n)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['n']:>6} {r['total_s']:>9.2f} {r['eigh_s']:>8.2f} "
              f"{r['eigh_s'] / r['total_s']:>10.0%} {r['peak_mib']:>9.0f}")


if __name__ == "__main__":
    main()
