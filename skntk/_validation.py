"""Input checks of the estimator and the rule that makes overflowing logits usable.

Pure functions: each raises a message that names the argument, shows what was
received and says what fixes it.
"""

import math
import numbers
import os
import sys
import warnings

import numpy as np
import scipy.sparse
from sklearn.utils.multiclass import type_of_target

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest float32, about 3.4e38: larger inputs are refused by ``fit`` and clipped by
``predict``."""

def refuse_sparse(X, name, owner=None):
    """Refuse a scipy sparse ``X`` with a ``TypeError`` naming ``name``: skntk computes on
    dense arrays. ``owner``: the estimator's name, whose message also says how to reduce
    the features; ``None`` for the kernel functions."""
    if scipy.sparse.issparse(X) and owner is None:
        raise TypeError(
            f"`{name}` is a scipy sparse matrix ({type(X).__name__}), but the kernel is "
            f"computed on dense arrays. Convert it with `{name}.toarray()`.")
    if scipy.sparse.issparse(X):
        n_rows, n_cols = X.shape
        raise TypeError(
            f"{owner} does not accept sparse input: `{name}` is a "
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
    if isinstance(value, (np.datetime64, np.timedelta64)) and np.isnat(value):
        return "NaT"  # whose .item() is None
    return repr(value.item() if isinstance(value, np.generic) else value)


def is_missing_label(value):
    """Whether ``value`` marks a missing label: ``None``, a float NaN (Python or numpy),
    a numpy ``NaT``, ``pandas.NA`` or ``pandas.NaT``."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    # Only pandas makes pd.NA and pd.NaT; if it is not imported, y holds neither. pd.NA
    # cannot be compared (its truth value raises), so it is recognised by identity.
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def refuse_missing_labels(y, name="y"):
    """Refuse missing labels in ``y`` (any array-like, not modified), before
    scikit-learn's checks see them.

    ``None``, NaN, ``NaT``, ``pandas.NA`` and ``pandas.NaT`` alike raise a
    ``ValueError`` that names ``name``, shows the first missing value and its
    position and says how many there are. Inputs that cannot be read as an array are
    left to the later checks, which explain what is wrong with them.
    """
    if y is None or isinstance(y, str) or scipy.sparse.issparse(y):
        return
    try:
        values = np.asarray(y)
    except (TypeError, ValueError):
        return
    if values.dtype.kind == "f":
        missing = np.isnan(values)
    elif values.dtype.kind in "mM":
        missing = np.isnat(values)
    elif values.dtype == object:
        missing = np.fromiter(map(is_missing_label, values.ravel()), dtype=bool,
                              count=values.size)
    else:
        return
    missing = missing.ravel()
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        n_missing = int(missing.sum())
        raise ValueError(
            f"`{name}` contains missing labels ({label_repr(values.ravel()[first])} at "
            f"position {first}; {n_missing} of {missing.size} samples). Drop those "
            f"samples or give them a label of their own.")


def label_kind(value):
    if is_missing_label(value):
        return "missing"
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, numbers.Number):
        return "number"
    return type(value).__name__


def refuse_mixed_labels(y, name="y"):
    """Object labels must be of one kind: all strings or all numbers, none missing."""
    if y.dtype != object:
        return
    kinds = {}
    for value in y:
        kinds.setdefault(label_kind(value), value)
    if "missing" in kinds:
        refuse_missing_labels(y, name)
    if len(kinds) > 1:
        examples = ", ".join(f"{kind} {label_repr(value)}" for kind, value in kinds.items())
        raise ValueError(
            f"`{name}` mixes labels of different kinds ({examples}), which cannot be sorted "
            f"into classes. Use labels of one kind, e.g. {name}.astype(str).")


def python_scalars(params):
    """The parameters with numbers as plain Python ``int`` and ``float``.

    numpy scalars (``numpy.float64(0.05)`` from a grid of ``numpy.logspace`` values,
    ``numpy.int64(3)``) become Python numbers, so that they enter JAX as weakly typed
    constants and take the float32 dtype of the computation, exactly like a Python
    float would, whether or not JAX's 64-bit mode is on. Booleans, strings, ``None``
    and other objects are returned unchanged.
    """
    def convert(value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            return value
        return int(value) if isinstance(value, numbers.Integral) else float(value)

    return {name: convert(value) for name, value in params.items()}


def usable_logits(logits):
    """The documented rule for overflowing logits (float64): NaN counts as the smallest
    value, ``+inf`` and ``-inf`` as the largest and smallest finite float64."""
    largest = np.finfo(np.float64).max
    return np.clip(np.where(np.isnan(logits), -largest, logits), -largest, largest)


def log_softmax(logits):
    """Row-wise log of :func:`softmax` for finite float64 logits, computed without
    forming the probabilities: finite where a probability underflows to 0 in float64,
    ``-inf`` only where the shifted logit itself overflows."""
    with np.errstate(over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits):
    """Row-wise softmax of finite float64 logits; rows sum to 1 (no NaN: the largest
    entry of a row contributes exp(0) = 1 to its sum)."""
    with np.errstate(over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)  # may be -inf: exp -> 0
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


_INTERNAL_DIRS = tuple(os.path.dirname(os.path.abspath(module.__file__)) + os.sep
                       for module in (sys.modules[__package__], sys.modules["sklearn"]))


def warn_user(message, category):
    """``warnings.warn`` attributed to the first caller outside skntk and scikit-learn
    (the user's ``fit`` or pipeline line), however deep inside it is raised."""
    frame, level = sys._getframe(1), 2  # 1 is this function, 2 its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
