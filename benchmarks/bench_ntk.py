"""Time and peak memory of the layer-wise empirical NTK against explicit Jacobians.

Run ``python benchmarks/bench_ntk.py``. Each case runs in a fresh subprocess so that
its peak memory can be read from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``:
the reported peak is the process's maximum resident set size minus the maximum
reached after importing JAX and placing the inputs and parameters on the device.
It therefore includes XLA's compilation memory as well as the arrays of the
computation (a conservative figure). Times are wall-clock seconds after a warm-up
call (best of a few runs); compile is the first call's time minus that.

Inputs are standard-normal with 64 features (the size of sklearn's digits), 10
classes, a ReLU MLP with Glorot-normal weights, in float32. The convolutional
section uses the default ``ConvNet`` on uniform 28x28 images (784 features).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

N_FEATURES = 64
N_CLASSES = 10
ITEMSIZE = 4
JACOBIAN_LIMIT_BYTES = 8 * 1024**3
SAMPLE_SIZES = (64, 256, 1024)
HIDDEN_LAYERS = ((128, 128), (512, 512))
LARGE_CASE = (4096, (512, 512))
GENERIC_METHODS = {"generic_jacobian": "jacobian", "generic_matrix_free": "matrix_free"}
"""The generic path of any ``apply_fn`` (:func:`skntk.ntk.model_ntk`) run on the MLP."""
GENERIC_BLOCK = 128
GENERIC_SIZES = (64, 256)
CONV_METHODS = {"conv_reference": None, "conv_jacobian": "jacobian",
                "conv_matrix_free": "matrix_free"}
"""The default ConvNet: one unblocked Jacobian contraction, or :func:`model_ntk`."""
CONV_SIZES = (64, 256)
CONV_PRODUCT_BLOCK = 32
"""Rows and identity columns per NTK-vector product on the ConvNet: its cotangents
hold ``block² · C`` copies of the feature maps (128 rows need 2.9 GiB)."""
CONV_PRODUCT_MAX = 64
"""Largest ``m`` for the products: a whole kernel costs ``2 · m² · C`` passes."""
CONV_FEATURES = 28 * 28


def n_parameters(hidden):
    sizes = (N_FEATURES, *hidden, N_CLASSES)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def jacobian_bytes(m, hidden):
    """Per-sample Jacobians plus an equal allowance for the contraction's temporaries."""
    return 2 * m * N_CLASSES * n_parameters(hidden) * ITEMSIZE


def _peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _conv_kernel(method, m):
    """The kernel call of one ConvNet case and its input."""
    import jax

    from skntk._convnet import ConvNet
    from skntk.ntk import empirical_ntk_reference, model_ntk

    model = ConvNet()
    params = model.init(jax.random.PRNGKey(0), CONV_FEATURES, N_CLASSES)
    X = jax.device_put(np.random.RandomState(0).uniform(size=(m, CONV_FEATURES))
                       .astype(np.float32))
    if CONV_METHODS[method] is None:
        return (lambda: empirical_ntk_reference(model.apply, params, X)), X
    implementation = CONV_METHODS[method]
    block = GENERIC_BLOCK if implementation == "jacobian" else CONV_PRODUCT_BLOCK
    return (lambda: model_ntk(model.apply, params, X, block_size=block,
                              implementation=implementation)), X


def measure(method, m, hidden, min_total_s=1.0, max_runs=5):
    """Run one case in this process; return a dict of timings and peak memory."""
    import jax

    from skntk._mlp import init_mlp_params, mlp_forward, params_to_jax
    from skntk.ntk import empirical_ntk, empirical_ntk_reference, model_ntk

    if method in CONV_METHODS:
        kernel, X = _conv_kernel(method, m)
        return _time_and_memory(kernel, X, min_total_s, max_runs)
    rng = np.random.RandomState(0)
    params = params_to_jax(init_mlp_params((N_FEATURES, *hidden, N_CLASSES), rng))
    X = jax.device_put(rng.standard_normal((m, N_FEATURES)).astype(np.float32))
    if method == "layerwise":
        def kernel():
            return empirical_ntk(params, X)
    elif method in GENERIC_METHODS:
        def kernel():
            return model_ntk(mlp_forward, params, X, block_size=GENERIC_BLOCK,
                             implementation=GENERIC_METHODS[method])
    else:
        def kernel():
            return empirical_ntk_reference(mlp_forward, params, X)
    return _time_and_memory(kernel, X, min_total_s, max_runs)


def _time_and_memory(kernel, X, min_total_s, max_runs):
    import jax

    jax.block_until_ready(X)
    baseline = _peak_rss_bytes()

    start = time.perf_counter()
    jax.block_until_ready(kernel())
    first = time.perf_counter() - start
    times = []
    while len(times) < max_runs and (sum(times) < min_total_s or len(times) < 2):
        start = time.perf_counter()
        jax.block_until_ready(kernel())
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"time_s": best, "compile_s": max(first - best, 0.0),
            "peak_mib": (_peak_rss_bytes() - baseline) / 1024**2}


def run_case(method, m, hidden):
    """Run :func:`measure` in a subprocess; ``None`` if it fails."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, str(m),
           *map(str, hidden)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_time(result):
    return f"{result['time_s'] * 1e3:10.1f}" if result else f"{'failed':>10}"


def comparison_section():
    """Layer-wise kernel against Jacobian contraction, for each size and width."""
    print("Layer-wise kernel vs explicit Jacobian contraction (jacrev + vmap + einsum)")
    print(f"{N_FEATURES} features, {N_CLASSES} classes, float32; times in ms, "
          "memory = peak RSS increase in MiB")
    header = (f"{'m':>5} {'hidden':>11} {'P':>7} | {'layer ms':>10} {'compile s':>9} "
              f"{'peak MiB':>8} | {'jacobian ms':>11} {'compile s':>9} {'peak MiB':>8} "
              f"| {'speed-up':>8}")
    print(header)
    print("-" * len(header))
    for hidden in HIDDEN_LAYERS:
        for m in SAMPLE_SIZES:
            ours = run_case("layerwise", m, hidden)
            if jacobian_bytes(m, hidden) > JACOBIAN_LIMIT_BYTES:
                jac, jac_cols = None, (f"{'skipped: needs > 8 GiB':>31}")
            else:
                jac = run_case("jacobian", m, hidden)
                jac_cols = (f"{_fmt_time(jac):>11} {jac['compile_s']:9.2f} "
                            f"{jac['peak_mib']:8.0f}") if jac else f"{'failed':>31}"
            ratio = (f"{jac['time_s'] / ours['time_s']:7.0f}x" if (ours and jac)
                     else f"{'-':>8}")
            ours_cols = (f"{_fmt_time(ours)} {ours['compile_s']:9.2f} {ours['peak_mib']:8.0f}"
                         if ours else f"{'failed':>29}")
            print(f"{m:5d} {str(hidden):>11} {n_parameters(hidden):7d} | {ours_cols} | "
                  f"{jac_cols} | {ratio}")
    print()


def generic_section():
    """The generic path (any network, :func:`skntk.ntk.model_ntk`) on the MLP, against
    the MLP's layer-wise engine and the unblocked Jacobian contraction
    (``empirical_ntk_reference``); ratios are to the layer-wise time."""
    print("Generic path (model_ntk: Jacobian tiles of "
          f"{GENERIC_BLOCK} rows, or NTK-vector products) vs layer-wise, on the MLP")
    header = (f"{'m':>5} {'hidden':>11} | {'layer ms':>10} | {'jacobian ms':>11} {'ratio':>7} "
              f"| {'tiles ms':>10} {'ratio':>7} | {'products ms':>11} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    hidden = HIDDEN_LAYERS[0]
    for m in GENERIC_SIZES:
        ours = run_case("layerwise", m, hidden)
        cols = []
        for method, width in (("jacobian", 11), ("generic_jacobian", 10),
                              ("generic_matrix_free", 11)):
            other = run_case(method, m, hidden)
            ratio = (f"{other['time_s'] / ours['time_s']:6.1f}x" if (ours and other)
                     else f"{'-':>7}")
            cols.append(f"{_fmt_time(other):>{width}} {ratio}")
        print(f"{m:5d} {str(hidden):>11} | {_fmt_time(ours)} | {' | '.join(cols)}")
    print()


def convnet_section():
    """The generic path on the default ConvNet (no layer-wise engine) against one
    unblocked per-sample Jacobian contraction (``empirical_ntk_reference``): ratios are
    the generic time over the contraction's."""
    print(f"ConvNet (default, 28x28x1 images, {N_CLASSES} outputs): model_ntk "
          f"(tiles of {GENERIC_BLOCK} rows, or NTK-vector products in blocks of "
          f"{CONV_PRODUCT_BLOCK}) vs one jax.jacobian "
          "contraction; times in ms, memory = peak RSS increase in MiB")
    header = (f"{'m':>5} | {'jacobian ms':>11} {'peak MiB':>8} | {'tiles ms':>10} "
              f"{'peak MiB':>8} {'ratio':>7} | {'products ms':>11} {'peak MiB':>8} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    for m in CONV_SIZES:
        reference = run_case("conv_reference", m, ())
        cols = [f"{_fmt_time(reference):>11} "
                + (f"{reference['peak_mib']:8.0f}" if reference else f"{'-':>8}")]
        for method, width in (("conv_jacobian", 10), ("conv_matrix_free", 11)):
            if method == "conv_matrix_free" and m > CONV_PRODUCT_MAX:
                cols.append(f"{'skipped':>{width}} {'-':>8} {'-':>7}")
                continue
            other = run_case(method, m, ())
            ratio = (f"{other['time_s'] / reference['time_s']:6.2f}x"
                     if (reference and other) else f"{'-':>7}")
            peak = f"{other['peak_mib']:8.0f}" if other else f"{'-':>8}"
            cols.append(f"{_fmt_time(other):>{width}} {peak} {ratio}")
        print(f"{m:5d} | {' | '.join(cols)}")
    print()


def large_kernel_section():
    """One large kernel with the layer-wise method only (target: peak under 2 GiB)."""
    m, hidden = LARGE_CASE
    print(f"Large kernel: m = {m}, hidden = {hidden}, {N_CLASSES} classes "
          "(Jacobian contraction would need "
          f"{jacobian_bytes(m, hidden) / 1024**3:.0f} GiB)")
    result = run_case("layerwise", m, hidden)
    if result is None:
        print("failed")
    else:
        print(f"time {result['time_s']:.2f} s, compile {result['compile_s']:.2f} s, "
              f"peak RSS increase {result['peak_mib']:.0f} MiB "
              f"(output alone {m * m * ITEMSIZE / 1024**2:.0f} MiB)")
    print()


def monitor_section(monitor_size=256, hidden=(128, 128), n_epochs=20):
    """One ``ntk_norm`` monitor check (kernel on the monitor subset and its distance to
    K_0) against one SGD epoch of the estimator's defaults on standardised digits."""
    import jax.numpy as jnp
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    from _timing import best_time, first_call_time
    from skntk._mlp import init_mlp_params, params_to_jax
    from skntk._sgd import epoch_order, sgd_epoch
    from skntk._switch import SWITCH_CRITERIA, SwitchConfig

    X, y = load_digits(return_X_y=True)
    X = jnp.asarray(StandardScaler().fit_transform(X), dtype=jnp.float32)
    Y = jnp.asarray(np.eye(10, dtype=np.float32)[y])
    params = params_to_jax(init_mlp_params((64, *hidden, 10), np.random.RandomState(0)))
    rng, n = np.random.RandomState(0), X.shape[0]
    first_call_time(lambda: sgd_epoch(params, X, Y, epoch_order(rng, n, n, 64), n, 0.05, 64))
    epoch_s = best_time(lambda: sgd_epoch(params, X, Y, epoch_order(rng, n, n, 64), n, 0.05, 64),
                        repeat=n_epochs)

    criterion = SWITCH_CRITERIA["ntk_norm"]
    config = SwitchConfig(3, 0.0, 1, X[:monitor_size])
    state = criterion.init(params, config)
    first_call_time(lambda: criterion.update(state, 1, params, config)[1])
    check_s = best_time(lambda: criterion.update(state, 1, params, config)[1], repeat=n_epochs)
    print(f"Monitor check (ntk_norm, ntk_monitor_size={monitor_size}, layers {hidden}) vs one "
          f"SGD epoch on digits (1797 samples, batch 64)")
    print(f"monitor check {check_s * 1e3:.2f} ms, SGD epoch {epoch_s * 1e3:.2f} ms, "
          f"ratio {check_s / epoch_s:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs="+", metavar="ARG",
                        help="internal: METHOD M WIDTH... runs one case and prints JSON")
    parser.add_argument("--only", choices=SECTIONS,
                        help="run this section only (all of them by default)")
    args = parser.parse_args()
    if args.worker:
        method, m, *hidden = args.worker
        print(json.dumps(measure(method, int(m), tuple(map(int, hidden)))))
        return
    for name in [args.only] if args.only else SECTIONS:
        SECTIONS[name]()


SECTIONS = {"comparison": comparison_section, "generic": generic_section,
            "convnet": convnet_section, "large": large_kernel_section,
            "monitor": monitor_section}


if __name__ == "__main__":
    main()
