"""Does the hybrid pay off with its defaults? SGD only against the default hybrid.

For each task and seed, with ``max_sgd_epochs=60`` and every other parameter at its
default, this prints the test score (accuracy; R^2 for the regression tasks, fitted
with ``HybridNTKRegressor``), the switch epoch, the NTK-phase epochs (one epoch of the
default L-BFGS phase is one Jacobian-vector and one vector-Jacobian product, about one
SGD epoch), the switch attempts (``len(switch_attempts_)``: a switch that the NTK
phase did not confirm is undone and SGD resumes) and the warm wall time of ``fit``
(JIT compilation excluded: one fit first, then the best of ``--repeat`` fits), for:

- **SGD only**: ``switch=None, ntk_phase=None``;
- **default hybrid**: ``HybridNTKClassifier(max_sgd_epochs=60)``;
- with ``--fixed``, **best fixed switch**: ``switch="fixed_epoch"`` with the default NTK
  phase, the switch epoch with the best test score in hindsight (a sweep; ties go to
  the earlier, cheaper switch);
- with ``--kernel``, on the classification tasks with at most 5000 training samples,
  the ``"kernel"`` phase at the default switch against kernel regression with the same
  kernel from the network's function (``kernel_offset="network"``).

The two methods of a task and seed run one after the other, so that their time ratio
is measured under the same load. The summary gives, per task, the score difference
to SGD only (worst seed and mean; percentage points of accuracy, or R^2), the mean
wall-time ratio, the switch attempts and epochs per seed and the NTK epochs, and
checks the acceptance rule of the user guide ("When does the hybrid pay off").

``--thresholds 0.25 0.2 0.15 0.12 0.1`` sweeps ``switch_threshold`` of the default
criterion instead (accuracy difference to SGD only and the switch and NTK epochs, the
evidence for the default threshold).

``--trajectory`` prints, every third epoch, the default criterion's statistic
``eps(e-k, e) / eps(0, e)`` and the kernel velocity ``v_e / d_e`` of
``switch="kernel_velocity"`` (from scouting runs, ``switch_threshold=0``) beside the
test accuracy of a fixed switch at that epoch minus SGD only's, means over the seeds:
how lazy the network looks against what a switch there costs.

The tasks ``fair``, ``anes96`` and ``randhie`` are real tables bundled with
statsmodels (``pip install skntk[bench]``); the others are bundled with scikit-learn
or generated.

``--solver adam`` compares, beside the SGD rows (SGD only, default hybrid), Adam
only (``solver="adam"``, ``switch=None, ntk_phase=None``) with the hybrid whose SGD
phase runs Adam (``solver="adam"``, default switch and NTK phase), both at
``learning_rate=ADAM_LEARNING_RATE`` (``MLPClassifier``'s ``learning_rate_init``).

Run from the repository root::

    python benchmarks/bench_hybrid.py            # 3 seeds, the four main tasks (several minutes)
    python benchmarks/bench_hybrid.py --tasks all     # all 15 tasks (about an hour on 2 cores)
    python benchmarks/bench_hybrid.py --seeds 1 --tasks digits interaction
    python benchmarks/bench_hybrid.py --tasks extra   # four further tasks
    python benchmarks/bench_hybrid.py --tasks new     # plateau, parity, real tables, regression
    python benchmarks/bench_hybrid.py --thresholds 0.25 0.2 0.15 0.12 0.1
    python benchmarks/bench_hybrid.py --trajectory --tasks interaction large
    python benchmarks/bench_hybrid.py --solver adam --seeds 1 --tasks digits breast_cancer
"""

import argparse
import platform
import time
import warnings

import numpy as np
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits, load_wine,
                              make_circles, make_classification, make_friedman1, make_moons)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skntk import HybridNTKClassifier, HybridNTKRegressor

BUDGET = 60
CLOCK = time.perf_counter
"""The clock of the timed fits: wall time, or with ``--cpu-time`` the process's CPU
time (all threads), which a machine shared with other work disturbs far less."""
FIXED_SWITCH_EPOCHS = (3, 6, 9, 12, 18, 24, 30, 40)


def _split(X, y, test_size, stratify=True):
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y if stratify else None, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def _regression_split(X, y, test_size):
    return _split(X, y, test_size, stratify=False)


def make_interaction(n_samples=4000, n_features=30, seed=0):
    """Label = sign of x0 * x1; the other inputs are noise (features must be learned)."""
    X = np.random.RandomState(seed).normal(size=(n_samples, n_features))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def make_plateau(n_samples=3000, n_features=20, seed=0):
    """Label = sign(sin(2 x0) + x1 x2) among Gaussian inputs: SGD crosses a plateau
    (flat validation accuracy from about epoch 18 to 30) before it learns the rest."""
    X = np.random.RandomState(seed).normal(size=(n_samples, n_features))
    return X, (np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] > 0).astype(int)


def make_sparse_parity(n_samples=3000, n_features=20, k=3, seed=0):
    """Label = parity of the first ``k`` of ``n_features`` random +-1 inputs."""
    X = np.random.RandomState(seed).choice([-1.0, 1.0], size=(n_samples, n_features))
    return X, (np.prod(X[:, :k], axis=1) > 0).astype(int)


def with_noise_inputs(X, y, n_noise, seed=0):
    """``X`` with ``n_noise`` standard Gaussian columns appended."""
    noise = np.random.RandomState(seed).normal(size=(X.shape[0], n_noise))
    return np.hstack([X, noise]), y


def _statsmodels_table(name):
    try:
        import statsmodels.api as sm
    except ImportError as error:
        raise SystemExit(f"The task {name!r} needs statsmodels, which bundles the table: "
                         f"pip install skntk[bench]") from error
    return getattr(sm.datasets, name).load_pandas().data


def load_fair():
    """Extramarital affairs (Fair 1978): any affair, from 8 survey answers; 6366 rows."""
    data = _statsmodels_table("fair")
    return data.drop(columns="affairs").to_numpy(float), (data["affairs"] > 0).astype(int)


def load_anes96():
    """1996 American National Election Study: vote (Clinton or Dole) from 10 answers."""
    data = _statsmodels_table("anes96")
    return data.drop(columns="vote").to_numpy(float), data["vote"].astype(int).to_numpy()


def load_randhie():
    """RAND health insurance experiment: log(1 + outpatient visits), 9 inputs, 20190 rows."""
    data = _statsmodels_table("randhie")
    return data.drop(columns="mdvis").to_numpy(float), np.log1p(data["mdvis"].to_numpy())


TASKS = {
    "digits": lambda: _split(*load_digits(return_X_y=True), 0.25),
    "breast_cancer": lambda: _split(*load_breast_cancer(return_X_y=True), 0.25),
    "interaction": lambda: _split(*make_interaction(), 0.5),
    "large": lambda: _split(*make_classification(
        n_samples=25000, n_features=40, n_informative=12, n_redundant=4, n_classes=5,
        random_state=0), 0.2),
    # Four further tasks, run with ``--tasks extra``.
    "wine": lambda: _split(*load_wine(return_X_y=True), 0.25),
    "moons_noise": lambda: _split(*with_noise_inputs(
        *make_moons(2000, noise=0.2, random_state=0), 8), 0.25),
    "circles_noise": lambda: _split(*with_noise_inputs(
        *make_circles(2000, noise=0.1, factor=0.5, random_state=0), 10), 0.25),
    "medium": lambda: _split(*make_classification(
        n_samples=5000, n_features=20, n_informative=8, n_classes=3, random_state=1), 0.25),
    # Seven more, run with ``--tasks new``.
    "plateau": lambda: _split(*make_plateau(), 0.25),
    "parity": lambda: _split(*make_sparse_parity(), 0.25),
    "fair": lambda: _split(*load_fair(), 0.25),
    "anes96": lambda: _split(*load_anes96(), 0.25),
    "diabetes": lambda: _regression_split(*load_diabetes(return_X_y=True), 0.25),
    "friedman": lambda: _regression_split(*make_friedman1(
        n_samples=4000, noise=1.0, random_state=0), 0.25),
    "randhie": lambda: _regression_split(*load_randhie(), 0.2),
}
DEFAULT_TASKS = ("digits", "breast_cancer", "interaction", "large")
EXTRA_TASKS = ("wine", "moons_noise", "circles_noise", "medium")
NEW_TASKS = ("plateau", "parity", "fair", "anes96", "diabetes", "friedman", "randhie")
REGRESSION_TASKS = ("diabetes", "friedman", "randhie")
TASK_NOTES = {
    "digits": "digits, 1347 train / 450 test, 64 inputs, 10 classes",
    "breast_cancer": "breast_cancer, 426 / 143, 30 inputs, 2 classes",
    "interaction": "sign(x0*x1) among 30 Gaussian inputs, 2000 / 2000, 2 classes",
    "large": "make_classification, 20000 / 5000, 40 inputs, 5 classes",
    "wine": "wine, 133 / 45, 13 inputs, 3 classes",
    "moons_noise": "two moons + 8 Gaussian inputs, 1500 / 500, 2 classes",
    "circles_noise": "two circles + 10 Gaussian inputs, 1500 / 500, 2 classes",
    "medium": "make_classification, 3750 / 1250, 20 inputs, 3 classes",
    "plateau": "sign(sin 2x0 + x1x2) among 20 Gaussian inputs, 2250 / 750",
    "parity": "3-sparse parity among 20 +-1 inputs, 2250 / 750",
    "fair": "statsmodels fair (affairs > 0), 4774 / 1592, 8 inputs",
    "anes96": "statsmodels anes96 (vote), 708 / 236, 10 inputs",
    "diabetes": "diabetes (regressor, R^2), 331 / 111, 10 inputs",
    "friedman": "make_friedman1 (regressor, R^2), 3000 / 1000, 10 inputs",
    "randhie": "statsmodels randhie log visits (R^2), 16152 / 4038, 9 inputs",
}


def estimator(task):
    return HybridNTKRegressor if task in REGRESSION_TASKS else HybridNTKClassifier


def score_unit(task):
    """Factor and unit of a score difference: percentage points, or R^2."""
    return (1.0, "R2") if task in REGRESSION_TASKS else (100.0, "pp")


def warm_fit(make, X, y, repeat=2, clock=time.perf_counter):
    """The fitted estimator and its best time on ``clock`` over ``repeat`` fits after
    a first (compiling) fit."""
    make().fit(X, y)
    best, clf = np.inf, None
    for _ in range(repeat):
        clf = make()
        start = clock()
        clf.fit(X, y)
        best = min(best, clock() - start)
    return clf, best


def ntk_epochs(clf):
    """NTK epochs of the model the fit ended with."""
    kept = [a for a in getattr(clf, "switch_attempts_", ()) if a["kept"]]
    return kept[0]["ntk_epochs"] if kept else clf.n_iter_ - clf.switch_epoch_


def attempts(clf):
    return len(getattr(clf, "switch_attempts_", ())) if clf.switch is not None else 0


def row(task, seed, method, clf, seconds, X_test, y_test):
    score = clf.score(X_test, y_test)
    epochs = getattr(clf, "switch_epochs_", [clf.switch_epoch_])
    print(f"{task:14s} {seed:4d}  {method:26s} {score:8.4f} {clf.switch_epoch_:7d} "
          f"{ntk_epochs(clf):6d} {attempts(clf):4d} {seconds:8.3f}  "
          f"switches at {list(map(int, epochs)) if clf.switch is not None else '-'}",
          flush=True)
    return score


def run_task(task, seeds, kernel, fixed, repeat):
    X_train, X_test, y_train, y_test = TASKS[task]()
    Estimator = estimator(task)
    factor, _ = score_unit(task)
    summary = []
    for seed in seeds:
        sgd, t_sgd = warm_fit(lambda: Estimator(
            max_sgd_epochs=BUDGET, switch=None, ntk_phase=None, random_state=seed),
            X_train, y_train, repeat, CLOCK)
        acc_sgd = row(task, seed, "SGD only", sgd, t_sgd, X_test, y_test)
        hybrid, t_hybrid = warm_fit(lambda: Estimator(
            max_sgd_epochs=BUDGET, random_state=seed), X_train, y_train, repeat, CLOCK)
        acc_hybrid = row(task, seed, "default hybrid", hybrid, t_hybrid, X_test, y_test)
        if fixed:
            best = None
            for epoch in FIXED_SWITCH_EPOCHS:
                clf, seconds = warm_fit(lambda: Estimator(
                    max_sgd_epochs=BUDGET, switch="fixed_epoch", switch_epoch=epoch,
                    random_state=seed), X_train, y_train, repeat=1)
                accuracy = clf.score(X_test, y_test)
                if best is None or accuracy > best[0]:
                    best = (accuracy, clf, seconds)
            row(task, seed, "best fixed switch", best[1], best[2], X_test, y_test)
        if kernel and X_train.shape[0] <= 5000 and task not in REGRESSION_TASKS:
            for offset in ("zero", "network"):
                clf, seconds = warm_fit(lambda: Estimator(
                    max_sgd_epochs=BUDGET, ntk_phase="kernel", kernel_offset=offset,
                    random_state=seed), X_train, y_train, repeat=1)
                row(task, seed, f"kernel phase, offset={offset}", clf, seconds, X_test, y_test)
        summary.append(dict(delta=factor * (acc_hybrid - acc_sgd), ratio=t_hybrid / t_sgd,
                            attempts=attempts(hybrid),
                            switches=[int(e) for e in hybrid.switch_epochs_],
                            ntk=ntk_epochs(hybrid)))
    return summary


def acceptance(task, summary):
    """Whether the task meets the user guide's rule: worst seed at least SGD only's
    - 1 pp (R^2 - 0.01), mean at least - 0.5 pp (R^2 - 0.005), time at most 1.0x
    unless the mean gains at least 1 pp (0.01 R^2)."""
    factor, _ = score_unit(task)
    deltas = np.array([s["delta"] for s in summary]) / factor * 100
    ratio = np.mean([s["ratio"] for s in summary])
    return bool(deltas.min() >= -1 and deltas.mean() >= -0.5
                and (ratio <= 1.0 or deltas.mean() >= 1))


ADAM_LEARNING_RATE = 1e-3
"""Adam's step in ``--solver adam`` (``MLPClassifier``'s default ``learning_rate_init``)."""


def compare_solvers(task, seeds):
    """``--solver adam``: SGD only, default hybrid, Adam only and the hybrid on Adam."""
    X_train, X_test, y_train, y_test = TASKS[task]()
    Estimator = estimator(task)
    adam = dict(solver="adam", learning_rate=ADAM_LEARNING_RATE)
    methods = [("SGD only", dict(switch=None, ntk_phase=None)), ("default hybrid", {}),
               ("Adam only", dict(switch=None, ntk_phase=None, **adam)),
               ("hybrid, solver='adam'", adam)]
    results = []
    for seed in seeds:
        for method, params in methods:
            clf, seconds = warm_fit(lambda: Estimator(
                max_sgd_epochs=BUDGET, random_state=seed, **params), X_train, y_train)
            results.append((row(task, seed, method, clf, seconds, X_test, y_test), seconds))
    results = np.array(results).reshape(len(seeds), len(methods), 2).mean(axis=0)
    print(f"  {TASK_NOTES[task]}: mean score / time relative to the single-phase run "
          f"of the same optimiser")
    for (method, _), (accuracy, seconds), base in zip(methods, results,
                                                      np.repeat(results[::2, 1], 2)):
        print(f"    {method:26s} {accuracy:8.4f}  {seconds / base:5.2f}x", flush=True)


def sweep_thresholds(task, seeds, thresholds):
    """Accuracy difference to SGD only (pp) and the switch and NTK epochs per threshold."""
    X_train, X_test, y_train, y_test = TASKS[task]()
    sgd = [HybridNTKClassifier(max_sgd_epochs=BUDGET, switch=None, ntk_phase=None,
                               random_state=seed).fit(X_train, y_train).score(X_test, y_test)
           for seed in seeds]
    for threshold in thresholds:
        rows = []
        for seed, acc_sgd in zip(seeds, sgd):
            clf = HybridNTKClassifier(max_sgd_epochs=BUDGET, switch_threshold=threshold,
                                      random_state=seed).fit(X_train, y_train)
            rows.append((100 * (clf.score(X_test, y_test) - acc_sgd), clf.switch_epoch_,
                         ntk_epochs(clf)))
        rows = np.array(rows, dtype=float)
        print(f"{task:14s} threshold {threshold:<6g} accuracy {rows[:, 0].mean():+6.2f} pp "
              f"(worst {rows[:, 0].min():+6.2f})  switch epochs {rows[:, 1].astype(int).tolist()}"
              f"  NTK epochs {rows[:, 2].astype(int).tolist()}", flush=True)


TRAJECTORY_EPOCHS = tuple(range(6, 43, 3))


def trajectory(task, seeds):
    """Per epoch: the criterion's statistic and the accuracy cost of switching there."""
    X_train, X_test, y_train, y_test = TASKS[task]()
    statistics, costs = [], []
    for seed in seeds:
        sgd = HybridNTKClassifier(max_sgd_epochs=BUDGET, switch=None, ntk_phase=None,
                                  random_state=seed).fit(X_train, y_train)
        acc_sgd = sgd.score(X_test, y_test)
        per_criterion = []
        for switch in ("linearization_error", "kernel_velocity"):
            scout = HybridNTKClassifier(
                max_sgd_epochs=TRAJECTORY_EPOCHS[-1], switch=switch, switch_threshold=0.0,
                ntk_phase=None, random_state=seed).fit(X_train, y_train)
            per_criterion.append([scout.history_["switch_statistic"][e - 1]
                                  for e in TRAJECTORY_EPOCHS])
        statistics.append(per_criterion)
        costs.append([100 * (HybridNTKClassifier(
            max_sgd_epochs=BUDGET, switch="fixed_epoch", switch_epoch=e,
            random_state=seed).fit(X_train, y_train).score(X_test, y_test) - acc_sgd)
            for e in TRAJECTORY_EPOCHS])
    statistics, costs = np.mean(statistics, axis=0), np.mean(costs, axis=0)
    print(f"{task}: epoch; eps(e-k, e) / eps(0, e) and v/d (means); a fixed switch there "
          f"against SGD only (pp, mean)")
    print("  " + " ".join(f"{e:>7d}" for e in TRAJECTORY_EPOCHS))
    for row in statistics:
        print("  " + " ".join(f"{v:7.4f}" for v in row))
    print("  " + " ".join(f"{c:+7.2f}" for c in costs), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS),
                        choices=list(TASKS) + ["extra", "new", "all"],
                        help="tasks to run (default: the four main tasks; 'extra': four "
                             "further tasks; 'new': seven more; 'all': every task)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..n-1 (default 3)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="timed fits per method and seed, best taken (default 2)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time the fits by the process's CPU time, not wall time")
    parser.add_argument("--fixed", action="store_true",
                        help="also the best fixed switch epoch in hindsight (a sweep)")
    parser.add_argument("--kernel", action="store_true",
                        help="also the kernel phase against kernel regression")
    parser.add_argument("--thresholds", nargs="+", type=float,
                        help="sweep switch_threshold of the default criterion instead")
    parser.add_argument("--trajectory", action="store_true",
                        help="the criterion's statistic against the cost of a switch per epoch")
    parser.add_argument("--solver", choices=["adam"],
                        help="also Adam only against the hybrid on Adam, beside the SGD rows")
    args = parser.parse_args()
    groups = {"extra": EXTRA_TASKS, "new": NEW_TASKS,
              "all": DEFAULT_TASKS + EXTRA_TASKS + NEW_TASKS}
    args.tasks = [t for name in args.tasks for t in groups.get(name, (name,))]
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", UserWarning)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    if args.trajectory:
        for task in args.tasks:
            trajectory(task, range(args.seeds))
        return
    if args.thresholds:
        for task in args.tasks:
            sweep_thresholds(task, range(args.seeds), args.thresholds)
        return
    if args.solver:
        for task in args.tasks:
            compare_solvers(task, range(args.seeds))
        return
    print(f"{platform.processor() or platform.machine()}, {platform.python_version()}; "
          f"max_sgd_epochs={BUDGET}, other parameters at their defaults; warm "
          f"{'CPU' if args.cpu_time else 'wall'} time, best of {args.repeat}; SGD only "
          f"and the hybrid alternate, seed by seed")
    print(f"{'task':14s} {'seed':>4s}  {'method':26s} {'score':>8s} {'switch':>7s} "
          f"{'ntk ep':>6s} {'att':>4s} {'fit s':>8s}")
    results = {task: run_task(task, range(args.seeds), args.kernel, args.fixed, args.repeat)
               for task in args.tasks}
    print("\nDefault hybrid against SGD only (score difference: worst seed and mean, "
          "percentage points of accuracy or R^2; mean time ratio; switch attempts "
          "and the switch epochs per seed; mean NTK epochs):")
    ratios = []
    for task, summary in results.items():
        _, unit = score_unit(task)
        deltas = [s["delta"] for s in summary]
        ratio = float(np.mean([s["ratio"] for s in summary]))
        ratios.append(ratio)
        digits = 3 if unit == "R2" else 2
        print(f"  {TASK_NOTES[task]:62s} {min(deltas):+7.{digits}f} {np.mean(deltas):+7.{digits}f}"
              f" {unit}  {ratio:5.2f}x  attempts {[s['attempts'] for s in summary]}  "
              f"switches {[s['switches'] for s in summary]}  NTK epochs "
              f"{np.mean([s['ntk'] for s in summary]):4.1f}  "
              f"{'ok' if acceptance(task, summary) else 'FAILS'}", flush=True)
    print(f"Median time ratio over the tasks: {np.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
