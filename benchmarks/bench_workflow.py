"""scikit-learn workflows end to end, each in a fresh Python process: grid search,
learning curve, first fit, compilations per fit and memory over many sizes.

Run: ``python benchmarks/bench_workflow.py`` (about 10 minutes on 2 busy cores;
``--repeat 3`` takes the best of three runs of every timed row, about 20 minutes;
``--quick`` skips the learning curves; ``--grid-only`` runs only the grid search;
``--summary`` only the table of the workflow goals, about 5 minutes).

Data: scikit-learn's digits (1797 x 64), standardised; network (128, 128), batch 64.

- **Grid search**: ``GridSearchCV(cv=5)`` over 6 learning rates, 30 epochs, with
  ``n_jobs=1``, ``n_jobs=2`` in joblib's default loky worker processes, and
  ``n_jobs=2`` in threads (``joblib.parallel_config(backend="threading")``), timed around
  ``GridSearchCV.fit`` in a new process (imports excluded, worker start-up
  included). ``MLPClassifier(solver="sgd")`` gets the same budget: 30 epochs (no early
  stop), the same grid of ``learning_rate_init``, plain SGD (no momentum). It is run
  with its default BLAS threads and with one BLAS thread (``threadpoolctl``); the
  ratios use the faster of the two. skntk runs as
  ``"SGD only"`` (``switch=None, ntk_phase=None``: exactly MLPClassifier's budget) and
  as ``"hybrid"`` (the estimator's defaults, ``max_sgd_epochs=30``: the switch
  criterion, then the default NTK phase), each with skntk's compilation cache empty
  (the first run ever: every cell gets a new empty ``SKNTK_COMPILATION_CACHE``
  directory) and warm (a shared directory filled by one untimed run first).
- **Learning curve**: ``learning_curve`` over 10 training sizes (10 % to 100 %),
  ``cv=5``, ``n_jobs=1``; MLPClassifier with one BLAS thread.
- **First fit**: one 30-epoch fit on the digits, the first in a new process, with an
  empty and a warm cache; and the same fit again in that process.
- **Learning curve again**: ``learning_curve`` over 8 sizes, ``cv=3``, twice in one
  process; the ratio of the first to the second time is what compiling costs.
- **Compilations**: executables that JAX compiles (or loads from the cache) during each
  of a sequence of fits, counted through :mod:`jax.monitoring`.
- **Memory**: 14 fits on 200, 201, ..., 213 rows (10 epochs): growth of the process's
  resident memory after the first fit; the bound is 50 MB.
- **Parallel capacity**, before and after the grid searches: a CPU-bound loop alone and
  with a copy beside it, which tells whether a second core was free to ``n_jobs=2``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

N_EPOCHS = 30
LEARNING_RATES = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1]
HIDDEN = (128, 128)
BATCH = 64
MEMORY_BOUND_MB = 50
CURVE_SIZES = 8

CONFIGS = {
    "sgd": dict(switch=None, ntk_phase=None),
    "hybrid": {},
}
CONFIG_NAMES = {"sgd": "SGD only", "hybrid": "hybrid (defaults)"}


# ------------------------------------------------------------------- worker side

def _digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _estimator(lib, config):
    if lib == "mlp":
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(hidden_layer_sizes=HIDDEN, solver="sgd", batch_size=BATCH,
                             learning_rate_init=0.05, max_iter=N_EPOCHS, momentum=0.0, tol=0.0,
                             n_iter_no_change=N_EPOCHS + 1, random_state=0)
    from skntk import HybridNTKClassifier
    return HybridNTKClassifier(hidden_layer_sizes=HIDDEN, batch_size=BATCH,
                               max_sgd_epochs=N_EPOCHS, random_state=0, **CONFIGS[config])


def _grid(lib):
    return {("learning_rate_init" if lib == "mlp" else "learning_rate"): LEARNING_RATES}


def _rss_mb():
    """Resident memory of this process in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _counter():
    if os.environ.get("BENCH_LIB") == "mlp":
        import contextlib
        return contextlib.nullcontext(type("Zero", (), {"count": 0})())
    from skntk._runtime import count_compilations
    return count_compilations()


def _blas_limit(blas_threads):
    import contextlib
    if not blas_threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(blas_threads)


def task_grid(lib, config, n_jobs, blas_threads=None, backend=None):
    import contextlib
    import joblib
    from sklearn.model_selection import GridSearchCV
    X, y = _digits()
    search = GridSearchCV(_estimator(lib, config), _grid(lib), cv=5, n_jobs=n_jobs)
    threads = (joblib.parallel_config(backend=backend) if backend
               else contextlib.nullcontext())
    with threads, _blas_limit(blas_threads), _counter() as compiled:
        start = time.perf_counter()
        search.fit(X, y)
        seconds = time.perf_counter() - start
    return dict(seconds=seconds, compilations=compiled.count,
                score=float(search.best_score_))


def task_curve(lib, config, blas_threads=None):
    import numpy as np
    from sklearn.model_selection import learning_curve
    X, y = _digits()
    with _blas_limit(blas_threads), _counter() as compiled:
        start = time.perf_counter()
        sizes, _, test = learning_curve(_estimator(lib, config), X, y, cv=5, n_jobs=1,
                                        train_sizes=np.linspace(0.1, 1.0, 10))
        seconds = time.perf_counter() - start
    return dict(seconds=seconds, compilations=compiled.count, sizes=sizes.tolist(),
                score=float(test.mean(axis=1)[-1]))


def task_curve_again(lib, config, blas_threads=None):
    """The same learning curve twice in one process: the second reuses every program."""
    import numpy as np
    from sklearn.model_selection import learning_curve
    X, y = _digits()
    times, counts = [], []
    for _ in range(2):
        with _blas_limit(blas_threads), _counter() as compiled:
            start = time.perf_counter()
            learning_curve(_estimator(lib, config), X, y, cv=3, n_jobs=1,
                           train_sizes=np.linspace(0.2, 1.0, CURVE_SIZES))
            times.append(time.perf_counter() - start)
        counts.append(compiled.count)
    return dict(seconds=times[0], again=times[1], compilations=counts[0],
                compilations_again=counts[1])


def task_first_fit(lib, config, blas_threads=None):
    X, y = _digits()
    times = []
    with _blas_limit(blas_threads), _counter() as first:
        start = time.perf_counter()
        _estimator(lib, config).fit(X, y)
        times.append(time.perf_counter() - start)
    with _blas_limit(blas_threads), _counter() as again:
        start = time.perf_counter()
        _estimator(lib, config).fit(X, y)
        times.append(time.perf_counter() - start)
    return dict(seconds=times[0], again=times[1], compilations=first.count,
                compilations_again=again.count)


def task_compilations(config):
    from skntk._runtime import count_compilations
    X, y = _digits()
    steps = [
        ("first fit, 1437 rows", dict(), 1437),
        ("same data again", dict(), 1437),
        ("1438 rows (same bucket)", dict(), 1438),
        ("other learning rates, switch window and threshold", dict(
            learning_rate=0.02, ntk_learning_rate=0.3, switch_window=2,
            switch_threshold=0.5), 1437),
        ("1797 rows (a new bucket)", dict(), 1797),
    ]
    rows = []
    for name, params, n in steps:
        est = _estimator("skntk", config).set_params(**params)
        with count_compilations() as compiled:
            est.fit(X[:n], y[:n])
        rows.append((name, compiled.count))
    with count_compilations() as compiled:
        est.predict(X[:360])
    rows.append(("predict 360 rows", compiled.count))
    return dict(rows=rows)


def task_memory(config):
    X, y = _digits()
    est = _estimator("skntk", config).set_params(max_sgd_epochs=10)
    est.fit(X[:200], y[:200])
    before = _rss_mb()
    from skntk._runtime import count_compilations
    with count_compilations() as compiled:
        for n in range(201, 214):
            est.fit(X[:n], y[:n])
    return dict(growth_mb=_rss_mb() - before, compilations=compiled.count)


def task_spin():
    """A fixed CPU-bound pure-Python loop; returns its wall seconds."""
    start = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i
    return dict(seconds=time.perf_counter() - start)


def run_task(spec):
    warnings.simplefilter("ignore")
    kind = spec.pop("task")
    return globals()[f"task_{kind}"](**spec)


# ------------------------------------------------------------------- parent side

RUN_TIMEOUT_S = 180
"""A run that takes longer is stopped and shown as ``> 180`` (MLPClassifier's BLAS
threads can spin for minutes on a busy 2-core machine)."""


def fresh(spec, cache_dir=None):
    """Run one task in a new Python process, with skntk's compilation cache in
    ``cache_dir`` (``None``: a new empty directory); returns its result and the process's
    wall seconds (``seconds=inf`` after :data:`RUN_TIMEOUT_S`)."""
    env = dict(os.environ, BENCH_LIB=spec.get("lib", "skntk"))
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(name, None)
    empty = None
    if not cache_dir:  # the first run ever: skntk's default cache on, but empty
        empty = tempfile.TemporaryDirectory(prefix="skntk-empty-cache-")
        cache_dir = empty.name
    env["SKNTK_COMPILATION_CACHE"] = cache_dir
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                              env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        if empty is not None:
            empty.cleanup()
        return dict(seconds=float("inf"), compilations=-1, score=float("nan"),
                    process_s=float("inf"))
    wall = time.perf_counter() - start
    if empty is not None:
        empty.cleanup()
    if done.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def _seconds(value):
    return f"> {RUN_TIMEOUT_S}" if value == float("inf") else f"{value:.2f}"


def _best(results):
    return min(results, key=lambda r: r["seconds"])


def capacity_section():
    """How much parallel CPU this machine gives right now: one CPU-bound process alone,
    then two at once. On a machine with two idle cores both take as long as one alone;
    when other load occupies a core, ``n_jobs=2`` cannot beat ``n_jobs=1``."""
    alone = fresh(dict(task="spin"))["seconds"]
    command = [sys.executable, __file__, "--worker", json.dumps(dict(task="spin"))]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    together = max(json.loads(run.communicate()[0].strip().splitlines()[-1])["seconds"]
                   for run in runs)
    print(f"\nParallel capacity: a CPU-bound loop takes {alone:.2f} s alone and {together:.2f} s "
          f"with a second copy beside it: {2 * alone / together:.2f} of 2 cores are free "
          f"(2.00 = two idle cores).")


def grid_section(repeat, cache_dir):
    rows = {}  # (label) -> {n_jobs: [results]}
    plan = [("MLPClassifier(solver='sgd')", dict(lib="mlp", config=None), None),
            ("MLPClassifier, 1 BLAS thread", dict(lib="mlp", config=None, blas_threads=1), None)]
    for config in CONFIGS:
        plan.append((f"skntk {CONFIG_NAMES[config]}", dict(lib="skntk", config=config), None))
        plan.append((f"skntk {CONFIG_NAMES[config]}, warm cache",
                     dict(lib="skntk", config=config), cache_dir))
    for config in CONFIGS:  # fill the cache (untimed)
        fresh(dict(task="grid", lib="skntk", config=config, n_jobs=1), cache_dir)
    # Columns: n_jobs=1; n_jobs=2 with joblib's default loky worker processes; n_jobs=2
    # with joblib's threading backend.
    columns = {"1": dict(n_jobs=1), "2 processes": dict(n_jobs=2),
               "2 threads": dict(n_jobs=2, backend="threading")}
    for _ in range(repeat):  # round robin, so that load changes hit every row alike
        for label, spec, cache in plan:
            for column, jobs in columns.items():
                result = fresh(dict(task="grid", **jobs, **spec), cache)
                rows.setdefault(label, {}).setdefault(column, []).append(result)
    best = {label: {c: _best(r) for c, r in by_jobs.items()} for label, by_jobs in rows.items()}
    mlp = min(best[label]["1"]["seconds"] for label in best if label.startswith("MLP"))
    print(f"\nGridSearchCV(cv=5), {len(LEARNING_RATES)} learning rates, {N_EPOCHS} epochs, "
          f"digits, {HIDDEN}, batch {BATCH}: seconds of GridSearchCV.fit in a fresh process "
          f"(best of {repeat})")
    header = (f"| {'estimator':<40} | {'n_jobs=1 s':>10} | {'/ MLP':>5} | "
              f"{'2 processes s':>13} | {'/ 1 job':>7} | {'2 threads s':>11} | "
              f"{'/ 1 job':>7} | {'compilations':>12} | {'best score':>10} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, by_jobs in best.items():
        one = by_jobs["1"]["seconds"]
        processes, threads = by_jobs["2 processes"]["seconds"], by_jobs["2 threads"]["seconds"]
        print(f"| {label:<40} | {_seconds(one):>10} | {one / mlp:>5.2f} | "
              f"{_seconds(processes):>13} | {processes / one:>7.2f} | "
              f"{_seconds(threads):>11} | {threads / one:>7.2f} | "
              f"{by_jobs['1']['compilations']:>12d} | {by_jobs['1']['score']:>10.3f} |")
    print("MLP = the faster MLPClassifier row with n_jobs=1; 2 threads: n_jobs=2 inside "
          "joblib.parallel_config(backend='threading'); compilations: in the n_jobs=1 process.")


def _skntk_runs(cache_dir):
    """``(label, spec, cache)`` of every skntk configuration, cold and with a warm cache."""
    runs = []
    for config in CONFIGS:
        runs.append((f"skntk {CONFIG_NAMES[config]}", dict(lib="skntk", config=config), None))
        runs.append((f"skntk {CONFIG_NAMES[config]}, warm cache",
                     dict(lib="skntk", config=config), cache_dir))
    return runs


def curve_section(cache_dir):
    print(f"\nlearning_curve, 10 sizes (10 % to 100 %), cv=5, {N_EPOCHS} epochs, n_jobs=1")
    header = (f"| {'estimator':<40} | {'seconds':>7} | {'compilations':>12} | "
              f"{'score at 100 %':>14} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    runs = [("MLPClassifier, 1 BLAS thread", dict(lib="mlp", config=None, blas_threads=1),
             None)]
    runs += _skntk_runs(cache_dir)
    for label, spec, cache in runs:
        if cache:  # fill the cache with this workflow's shapes (untimed)
            fresh(dict(task="curve", **spec), cache)
        r = fresh(dict(task="curve", **spec), cache)
        print(f"| {label:<40} | {_seconds(r['seconds']):>7} | {r['compilations']:>12d} | "
              f"{r['score']:>14.3f} |")


def first_fit_section(cache_dir):
    print(f"\nFirst fit in a new process (digits, {N_EPOCHS} epochs); import of the library "
          f"excluded")
    header = (f"| {'estimator':<40} | {'first fit s':>11} | {'same fit again s':>16} | "
              f"{'compilations':>12} | {'again':>5} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    runs = [("MLPClassifier(solver='sgd')", dict(lib="mlp", config=None), None),
            ("MLPClassifier, 1 BLAS thread", dict(lib="mlp", config=None, blas_threads=1),
             None)]
    runs += _skntk_runs(cache_dir)
    for label, spec, cache in runs:
        r = fresh(dict(task="first_fit", **spec), cache)
        if r["seconds"] == float("inf"):
            r.update(again=float("inf"), compilations_again=-1)
        print(f"| {label:<40} | {_seconds(r['seconds']):>11} | {_seconds(r['again']):>16} | "
              f"{r['compilations']:>12d} | {r['compilations_again']:>5d} |")


def curve_again_section(cache_dir):
    print(f"\nlearning_curve, {CURVE_SIZES} sizes (20 % to 100 %), cv=3, {N_EPOCHS} epochs: "
          f"first and second time in one process")
    header = (f"| {'estimator':<40} | {'first s':>7} | {'again s':>7} | {'ratio':>5} | "
              f"{'compilations':>12} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, spec, cache in _skntk_runs(cache_dir)[2:]:
        if cache:
            fresh(dict(task="curve_again", **spec), cache)
        r = fresh(dict(task="curve_again", **spec), cache)
        print(f"| {label:<40} | {_seconds(r['seconds']):>7} | {_seconds(r['again']):>7} | "
              f"{r['seconds'] / r['again']:>5.2f} | {r['compilations']:>12d} |")


def compilations_section():
    for config in CONFIGS:
        r = fresh(dict(task="compilations", config=config))
        print(f"\nCompilations per fit, skntk {CONFIG_NAMES[config]} (one process, no cache)")
        for name, count in r["rows"]:
            print(f"  {name:<52} {count:>3d}")
    r = fresh(dict(task="memory", config="hybrid"))
    verdict = "holds" if r["growth_mb"] < MEMORY_BOUND_MB else "FAILS"
    print(f"\n14 fits on 200..213 rows (hybrid, 10 epochs): resident memory grew "
          f"{r['growth_mb']:.1f} MB after the first fit, {r['compilations']} compilations "
          f"(bound {MEMORY_BOUND_MB} MB: {verdict})")


def summary_section(cache_dir):
    """The figures of the workflow goals, side by side in one run: the grid search with
    an empty and a warm cache against MLPClassifier, n_jobs=2 against n_jobs=1, a
    learning curve against itself again, the first default fit."""
    hybrid = dict(lib="skntk", config="hybrid")
    fresh(dict(task="grid", n_jobs=1, **hybrid), cache_dir)  # fill the cache (untimed)
    mlp = min(fresh(dict(task="grid", n_jobs=1, lib="mlp", config=None, blas_threads=b))
              ["seconds"] for b in (None, 1))
    grid = {(jobs, warm): fresh(dict(task="grid", n_jobs=jobs, **hybrid),
                                cache_dir if warm else None)["seconds"]
            for jobs in (1, 2) for warm in (False, True)}
    first = {warm: fresh(dict(task="first_fit", **hybrid), cache_dir if warm else None)
             for warm in (False, True)}
    curve = fresh(dict(task="curve_again", **hybrid))
    rows = [
        ("GridSearchCV(cv=5), 6 candidates, empty cache / MLPClassifier",
         grid[1, False] / mlp, 0.5),
        ("GridSearchCV(cv=5), 6 candidates, warm cache / MLPClassifier",
         grid[1, True] / mlp, 0.3),
        ("n_jobs=2 (loky) / n_jobs=1, empty cache", grid[2, False] / grid[1, False], 0.8),
        ("n_jobs=2 (loky) / n_jobs=1, warm cache", grid[2, True] / grid[1, True], 0.8),
        ("learning_curve, 8 sizes: first / again in the process",
         curve["seconds"] / curve["again"], 3.0),
        ("first default fit, empty cache (s)", first[False]["seconds"], 1.0),
        ("first default fit, warm cache (s)", first[True]["seconds"], 0.5),
    ]
    print(f"\nSummary (hybrid defaults, {N_EPOCHS} epochs, digits; MLPClassifier "
          f"{mlp:.2f} s; skntk grid n_jobs=1 {grid[1, False]:.2f} s empty, "
          f"{grid[1, True]:.2f} s warm; n_jobs=2 {grid[2, False]:.2f} s empty, "
          f"{grid[2, True]:.2f} s warm; curve {curve['seconds']:.2f} s then "
          f"{curve['again']:.2f} s)")
    header = f"| {'measure':<62} | {'value':>6} | {'goal':>5} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, value, goal in rows:
        print(f"| {name:<62} | {value:>6.2f} | {goal:>5.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed runs per grid-search row; the best is shown")
    parser.add_argument("--quick", action="store_true", help="skip the learning curves")
    parser.add_argument("--grid-only", action="store_true",
                        help="only the grid-search table (and the capacity checks)")
    parser.add_argument("--summary", action="store_true",
                        help="only the summary of the workflow goals (about 15 processes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_task(json.loads(args.worker))))
        return
    import jax
    import sklearn
    print(f"JAX {jax.__version__} on {jax.default_backend()}, scikit-learn "
          f"{sklearn.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="skntk-cache-") as cache_dir:
        capacity_section()
        if args.summary:
            summary_section(cache_dir)
            capacity_section()
            return
        grid_section(args.repeat, cache_dir)
        capacity_section()
        if args.grid_only:
            return
        first_fit_section(cache_dir)
        curve_again_section(cache_dir)
        compilations_section()
        if not args.quick:
            curve_section(cache_dir)


if __name__ == "__main__":
    main()
