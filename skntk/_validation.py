"""Input checks of the estimator and the rule that makes overflowing logits usable.

Pure functions: each raises a message that names the argument, shows what was
received and says what fixes it.
"""

import math
import numbers

import numpy as np
import scipy.sparse
from sklearn.utils.multiclass import type_of_target

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest float32, about 3.4e38: larger inputs are refused by ``fit`` and clipped by
``predict``."""

def refuse_sparse(X, name):
    if scipy.sparse.issparse(X):
        n_rows, n_cols = X.shape
        raise TypeError(
            f"HybridNTKClassifier does not accept sparse input: `{name}` is a "
            f"{type(X).__name__} of shape {X.shape}. It trains on dense float32 arrays; "
            f"convert it with `{name}.toarray()` (about {n_rows * n_cols * 4 / 1024**2:.1f} "
            f"MiB dense in float32), or reduce the features first (e.g. with "
            f"sklearn.decomposition.TruncatedSVD).")


def refuse_multi_column_y(y):
    """Multilabel / multi-output ``y`` (a 2-D array of more than one column)."""
    if y is None or isinstance(y, str) or scipy.sparse.issparse(y):
        return
    shape = getattr(y, "shape", None)
    if not isinstance(shape, tuple):
        try:
            shape = np.asarray(y).shape
        except (TypeError, ValueError):
            return  # left to validate_data, which explains what is wrong
    if len(shape) == 2 and shape[1] > 1:
        try:
            kind = type_of_target(y, input_name="y")
        except (TypeError, ValueError):
            kind = "multi-column"
        raise ValueError(
            f"HybridNTKClassifier predicts one label per sample, but `y` has shape "
            f"{shape} ({kind} targets). Pass a 1-D array of class labels; for "
            f"multilabel problems wrap the estimator in "
            f"sklearn.multioutput.MultiOutputClassifier.")


def check_float32_range(X, name):
    """Refuse finite values that overflow to inf in the float32 computation."""
    if X.dtype == np.float64 and X.size:
        largest = max(float(X.max()), -float(X.min()))  # no |X| copy
        if largest > FLOAT32_MAX:
            raise ValueError(
                f"`{name}` holds values beyond the float32 range used for the computation "
                f"(largest |value| {largest:.3g} > {FLOAT32_MAX:.3g}); they would overflow "
                f"to infinity. Rescale `{name}` (e.g. with "
                f"sklearn.preprocessing.StandardScaler).")


def label_repr(value):
    """``repr`` of a label as the user wrote it (``'a'``, not ``np.str_('a')``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def label_kind(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, numbers.Number):
        return "number"
    return type(value).__name__


def refuse_mixed_labels(y):
    """Object labels must be of one kind: all strings or all numbers, none missing."""
    if y.dtype != object:
        return
    kinds = {}
    for value in y:
        kinds.setdefault(label_kind(value), value)
    if "missing" in kinds:
        raise ValueError(
            f"`y` contains missing labels ({label_repr(kinds['missing'])}). Drop those samples or "
            f"give them a label of their own.")
    if len(kinds) > 1:
        examples = ", ".join(f"{kind} {label_repr(value)}" for kind, value in kinds.items())
        raise ValueError(
            f"`y` mixes labels of different kinds ({examples}), which cannot be sorted "
            f"into classes. Use labels of one kind, e.g. y.astype(str).")


def usable_logits(logits):
    """The documented rule for overflowing logits (float64): NaN counts as the smallest
    value, ``+inf`` and ``-inf`` as the largest and smallest finite float64."""
    largest = np.finfo(np.float64).max
    return np.clip(np.where(np.isnan(logits), -largest, logits), -largest, largest)


def softmax(logits):
    """Row-wise softmax of finite float64 logits; rows sum to 1 (no NaN: the largest
    entry of a row contributes exp(0) = 1 to its sum)."""
    with np.errstate(over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)  # may be -inf: exp -> 0
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
