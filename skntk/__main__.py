"""Command line: compare plain SGD with the hybrid SGD -> NTK strategy on one dataset.

``skntk`` (or ``python -m skntk``) with no arguments standardises scikit-learn's
bundled digits data, splits it 75/25 (stratified, seeded), fits plain SGD and the
hybrid with the same seed and SGD epoch budget, and prints a table with the warm wall
time of each fit. ``--dataset interaction`` runs a generated task where features must
be learned (the label is the sign of ``x0 * x1``, two of 30 Gaussian inputs). A
real-valued target (``--dataset diabetes``, or a CSV column of non-integer numbers),
or ``--task regression``, runs :class:`~skntk.HybridNTKRegressor` and scores R^2.
"""

import argparse
import csv
import importlib.util
import math
import os
import sys
import time
import warnings

import numpy as np
from sklearn import datasets
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import type_of_target

from ._classifier import HybridNTKClassifier
from ._parameterization import PARAMETERIZATIONS
from ._phases import NTK_PHASES
from ._regressor import HybridNTKRegressor
from ._switch import SWITCH_CRITERIA

def make_interaction(n_samples=4000, n_features=30, seed=0):
    """A generated task that needs feature learning: the label is the sign of
    ``x0 * x1``; the other inputs are Gaussian noise. Returns ``(X, y)``."""
    X = np.random.RandomState(seed).normal(size=(n_samples, n_features))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


BUNDLED = {
    "digits": datasets.load_digits,
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "iris": datasets.load_iris,
    "diabetes": datasets.load_diabetes,
}
GENERATED = {"interaction": make_interaction}


def _none_or(value):
    return None if value == "none" else value


def _threshold(text):
    """``--switch-threshold``: a number or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="skntk", description="Plain SGD against hybrid SGD -> NTK training on one dataset "
                    "(HybridNTKClassifier, or HybridNTKRegressor for a real-valued target).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=sorted(BUNDLED) + sorted(GENERATED),
                        default="digits",
                        help="bundled scikit-learn dataset, or 'interaction', a generated "
                             "task that needs feature learning (default: digits)")
    source.add_argument("--csv", metavar="PATH", help="a CSV file with a header row")
    parser.add_argument("--target", metavar="COLUMN", help="label column of --csv")
    parser.add_argument("--task", choices=["auto", "classification", "regression"],
                        default="auto",
                        help="'auto' (default): regression for a real-valued target "
                             "(numbers not all whole, or whole numbers of more than 20 "
                             "distinct values), else classification")
    parser.add_argument("--switch", default=None,
                        choices=[c if c else "none" for c in SWITCH_CRITERIA],
                        help="switch criterion (default: the estimator's, "
                             "linearization_error for classification, kernel_velocity "
                             "for regression)")
    parser.add_argument("--parameterization", default="standard",
                        choices=sorted(PARAMETERIZATIONS),
                        help="parameterisation of the network (default: standard)")
    parser.add_argument("--ntk-phase", default="linearized",
                        choices=[p if p else "none" for p in NTK_PHASES],
                        help="NTK phase (default: linearized)")
    parser.add_argument("--switch-threshold", type=_threshold, default=None,
                        help="switch threshold; its scale depends on the criterion "
                             "(default: 'auto', 0.15 for linearization_error)")
    parser.add_argument("--max-sgd-epochs", type=int, default=60,
                        help="SGD epoch budget of both methods (default: 60)")
    parser.add_argument("--ntk-epochs", type=float, default=None,
                        help="NTK epochs (default: 'auto', until converged or the "
                             "validation accuracy stops improving); 'inf' for kernel "
                             "regression with --ntk-phase kernel")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--plot", metavar="PNG", help="save the hybrid's training history plot")
    return parser


def _parse_float(text):
    try:
        return float(text)
    except ValueError:
        return None


def _non_finite_lines(path, columns):
    """A ``ValueError`` naming the numeric columns that hold ``inf``, ``nan`` or a
    number beyond the float64 range (``1e999``), with their first lines, or ``None``."""
    found = []
    for name, values in columns:
        lines = [i + 2 for i, v in enumerate(values) if not math.isfinite(v)]
        if lines:
            found.append(f"{name!r} (line(s) {', '.join(map(str, lines[:5]))})")
    if not found:
        return None
    return ValueError(f"{path} has infinite, NaN or out-of-range numbers in column(s) "
                      f"{'; '.join(found[:5])}; replace or remove them first.")


def read_csv(path, target):
    """Numeric feature columns and the label column of a CSV file with a header row.

    Returns ``(X, y, ignored)``: ``X`` float64 of shape (n_rows, n_numeric_columns),
    ``y`` the labels (numbers when every label parses as one, else strings) and the
    names of the non-numeric feature columns left out. The file is read as UTF-8; a
    leading byte-order mark (as spreadsheet programs write it) is dropped. Raises
    ``ValueError`` for text that is not UTF-8, a missing target column, empty or
    missing cells, or no numeric feature column.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8 "
                         f"(CSV UTF-8).") from exc
    if not rows:
        raise ValueError(f"{path} is empty.")
    header, body = rows[0], [row for row in rows[1:] if row]
    if not body:
        raise ValueError(f"{path} has a header but no data rows.")
    if target not in header:
        raise ValueError(f"--target {target!r} is not a column of {path}; columns: "
                         f"{', '.join(header)}")
    bad = [i + 2 for i, row in enumerate(body)
           if len(row) != len(header) or any(not cell.strip() for cell in row)]
    if bad:
        raise ValueError(f"{path} has missing or empty cells on line(s) "
                         f"{', '.join(map(str, bad[:5]))}; remove or fill them first.")
    columns = list(zip(*body))
    labels = columns[header.index(target)]
    numeric_labels = [_parse_float(v) for v in labels]
    y = np.array(numeric_labels if None not in numeric_labels else labels)
    features, ignored, numeric = [], [], []
    for name, column in zip(header, columns):
        if name == target:
            continue
        values = [_parse_float(v) for v in column]
        if None in values:
            ignored.append(name)
        else:
            features.append(values)
            numeric.append((name, values))
    if None not in numeric_labels:
        numeric.insert(0, (target, numeric_labels))
    error = _non_finite_lines(path, numeric)
    if error is not None:
        raise error
    if not features:
        raise ValueError(f"{path} has no numeric feature column besides {target!r}.")
    return np.array(features, dtype=float).T, y, ignored


def load_data(args, parser):
    """Features and labels from a bundled dataset or a CSV file."""
    if args.csv is None:
        if args.target:
            parser.error("--target goes with --csv PATH")
        if args.dataset in GENERATED:
            X, y = GENERATED[args.dataset]()
            return X, y, f"{args.dataset} (generated: label = sign of x0 * x1 among 30 inputs)"
        data = BUNDLED[args.dataset]()
        return data.data, data.target, args.dataset
    if not args.target:
        parser.error("--csv needs --target COLUMN (the label column)")
    try:
        X, y, ignored = read_csv(args.csv, args.target)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    if ignored:
        print(f"ignored non-numeric column(s): {', '.join(ignored)}")
    return X, y, args.csv


def _fit_timed(clf, X_train, y_train, X_test, y_test):
    """Test accuracy and wall seconds of one fit, JIT compilation excluded: a short fit
    on the same shapes (a few epochs, so that the switch criterion is checked) compiles
    every jitted function first. Warnings of the timed fit are shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm_up = dict(max_sgd_epochs=min(clf.max_sgd_epochs, clf.switch_window))
        if clf.ntk_epochs != "auto":
            warm_up["ntk_epochs"] = min(clf.ntk_epochs, 1)
        clone(clf).set_params(**warm_up).fit(X_train, y_train)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    total = time.perf_counter() - start
    return clf.score(X_test, y_test), total


TEST_SIZE = 0.25
"""Share of the data held out for the test accuracy."""


def split_data(X, y, seed, parser):
    """The stratified 75/25 train/test split; data it cannot split is a usage error
    that names the reason (``parser.error``: exit status 2, no traceback)."""
    labels, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        rare = [repr(label) for label, count in zip(labels.tolist(), counts) if count < 2]
        which = (f"class {rare[0]} has 1 row" if len(rare) == 1 else
                 f"classes {', '.join(rare[:5])}{', ...' if len(rare) > 5 else ''} have 1 "
                 f"row each")
        parser.error(
            f"the stratified {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} train/test split needs at "
            f"least 2 rows of every class; {which} (of {len(y)} rows). Add rows of "
            f"{'that class' if len(rare) == 1 else 'those classes'} or remove "
            f"{'its row' if len(rare) == 1 else 'their rows'}.")
    try:
        return train_test_split(X, y, test_size=TEST_SIZE, stratify=y, random_state=seed)
    except ValueError as exc:  # e.g. more classes than test rows
        parser.error(f"cannot split the {len(y)} rows into a stratified "
                     f"{1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} train/test split with every one "
                     f"of the {len(labels)} classes in both parts: {exc}")


def check_plot_path(path, parser):
    """Refuse, before any training, a ``--plot`` path that cannot be written: a format
    matplotlib does not write (from the extension; none means PNG), a folder, or a
    folder that does not exist or is not writable (a usage error, exit status 2)."""
    if importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib: pip install matplotlib")
    from matplotlib.figure import Figure

    extension = os.path.splitext(path)[1][1:].lower()
    formats = Figure().canvas.get_supported_filetypes()
    if extension and extension not in formats:
        parser.error(f"--plot {path}: matplotlib cannot write '.{extension}' files; use "
                     f"one of {', '.join('.' + f for f in sorted(formats))} (e.g. "
                     f"history.png).")
    if os.path.isdir(path):
        parser.error(f"--plot {path} is a folder; give a file name, e.g. {path}/history.png.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"--plot {path}: the folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK) or (os.path.exists(path)
                                          and not os.access(path, os.W_OK)):
        parser.error(f"--plot {path}: no permission to write there; choose another path.")


MAX_AUTO_CLASSES = 20
"""``--task auto``: a numeric target of whole numbers with more distinct values than
this is real-valued (a count or a score, as ``diabetes``), not class labels."""


def task_of(y, task):
    """``"regression"`` or ``"classification"``: ``task`` unless ``"auto"``, then
    regression for a real-valued target: numbers that are not all whole
    (``type_of_target`` "continuous"), or whole numbers of more than
    :data:`MAX_AUTO_CLASSES` distinct values."""
    if task != "auto":
        return task
    kind = type_of_target(y)
    if kind in ("continuous", "continuous-multioutput"):
        return "regression"
    numeric = np.asarray(y).dtype.kind in "iuf"
    return ("regression" if numeric and len(np.unique(y)) > MAX_AUTO_CLASSES
            else "classification")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.plot:
        check_plot_path(args.plot, parser)
    X, y, name = load_data(args, parser)
    task = task_of(y, args.task)
    if task == "regression":
        try:
            y = np.asarray(y, dtype=float)
        except ValueError:
            parser.error("--task regression needs a numeric target")
        Estimator, score_name = HybridNTKRegressor, "test R2"
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST_SIZE,
                                                            random_state=args.seed)
    else:
        Estimator, score_name = HybridNTKClassifier, "test acc"
        X_train, X_test, y_train, y_test = split_data(X, y, args.seed, parser)
    try:
        with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scaler = StandardScaler().fit(X_train)
            X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    except ValueError as exc:
        parser.error(f"cannot standardise the features: {exc}")
    if not (np.isfinite(X_train).all() and np.isfinite(X_test).all()):
        parser.error("standardising the features overflows float64 (values too large "
                     "to square, beyond about 1e154); rescale those columns first.")

    switch = args.switch or Estimator().switch
    common = dict(max_sgd_epochs=args.max_sgd_epochs, random_state=args.seed,
                  parameterization=args.parameterization)
    hybrid_params = dict(switch=_none_or(switch), ntk_phase=_none_or(args.ntk_phase))
    if args.switch_threshold is not None:
        hybrid_params["switch_threshold"] = args.switch_threshold
    if args.ntk_epochs is not None:
        hybrid_params["ntk_epochs"] = args.ntk_epochs
    runs = [("plain SGD", Estimator(switch=None, ntk_phase=None, **common)),
            (f"hybrid ({switch} -> {args.ntk_phase})", Estimator(**hybrid_params, **common))]

    targets = (f"classes: {len(np.unique(y))}" if task == "classification"
               else "target: real-valued (regression)")
    print(f"dataset: {name}  train: {X_train.shape[0]}  test: {X_test.shape[0]}  "
          f"features: {X.shape[1]}  {targets}  seed: {args.seed}  "
          f"parameterization: {args.parameterization}")
    width = max(len(label) for label, _ in runs)
    header = (f"{'method':<{width}} {'SGD budget':>10} {'switch epoch':>12} {'NTK epochs':>10} "
              f"{score_name:>9} {'SGD s':>7} {'NTK s':>7} {'total s':>8} {'vs SGD':>7}")
    print(header)
    print("-" * len(header))
    baseline = None
    for label, clf in runs:
        try:
            acc, total = _fit_timed(clf, X_train, y_train, X_test, y_test)
        except ValueError as exc:  # invalid parameters or data: the message says why
            parser.error(str(exc))
        baseline = baseline or total
        switch = str(clf.switch_epoch_) + ("" if clf.switch_reached_ or clf.switch is None else "*")
        if clf.switch is None:
            switch = "-"
        ntk = "-" if clf.ntk_phase is None else str(clf.n_iter_ - clf.switch_epoch_)
        print(f"{label:<{width}} {clf.max_sgd_epochs:>10} {switch:>12} {ntk:>10} {acc:>9.4f} "
              f"{clf.sgd_time_:>7.2f} {clf.ntk_time_:>7.2f} {total:>8.2f} "
              f"{total / baseline:>6.2f}x")
    print("warm wall time in seconds (JIT compilation excluded); both methods have the same "
          f"SGD epoch budget (max_sgd_epochs={args.max_sgd_epochs})")
    if any(c.switch is not None and not c.switch_reached_ for _, c in runs):
        print("* the switch criterion did not hold within the SGD budget")
    if args.plot:
        from .plotting import TrainingHistoryDisplay

        display = TrainingHistoryDisplay.from_estimator(runs[-1][1])
        try:
            display.figure_.savefig(args.plot, dpi=120, bbox_inches="tight")
        except (OSError, ValueError) as exc:
            parser.error(f"cannot write --plot {args.plot}: {exc}")
        print(f"history plot saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
