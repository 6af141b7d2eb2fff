"""Sample weights: checked, and the training rows in the form every phase trains on.

A fit minimises the weighted mean loss ``sum_i w_i ell_i / sum_i w_i``. Two rules make
the weights exact rather than approximate:

- a row of weight zero is removed before anything else (the validation split, the
  monitor subset, the SGD order), so it is a removed row, exactly;
- identical rows (the same features and the same target) are merged into one row
  weighing their total, and a set holding merged rows or weights other than 1 is
  ordered canonically (by the bytes of its rows). Integer weights and repeated rows
  then describe the same weighted set, which every phase trains on identically.

A set of distinct rows with unit weights (the usual, unweighted case) is left as it is,
in its order.
"""

import numpy as np
from sklearn.utils.validation import _check_sample_weight


def check_sample_weight(sample_weight, X):
    """``sample_weight`` as a new float64 array of shape (n_samples,), or ``None``.

    Raises
    ------
    ValueError
        If it has another shape than (n_samples,), holds a negative, NaN or infinite
        value, or every weight is zero.
    """
    if sample_weight is None:
        return None
    weights = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                   ensure_non_negative=True, copy=True)
    if not np.all(np.isfinite(weights)):
        raise ValueError("`sample_weight` holds NaN or infinite values; pass finite "
                         "non-negative weights.")
    if not np.any(weights > 0):
        raise ValueError("Sample weights must contain at least one non-zero number; every "
                         "weight in `sample_weight` is zero.")
    return weights


def canonical_rows(X, targets, sample_weight):
    """The training rows as every phase sees them (see the module docstring).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Checked inputs.
    targets : ndarray of shape (n,) or (n, k)
        Class indices or target values, compared exactly.
    sample_weight : ndarray of shape (n,) or None
        From :func:`check_sample_weight`.

    Returns
    -------
    rows : ndarray of shape (n',), int
        Rows of ``X`` kept, in training order (the first of each merged group).
    weights : ndarray of shape (n',), float64, or None
        The weight of each kept row; ``None`` when every kept row weighs 1 and no row
        was merged (the set is then used as given).
    """
    n = X.shape[0]
    rows = np.arange(n) if sample_weight is None else np.flatnonzero(sample_weight > 0)
    weights = None if sample_weight is None else sample_weight[rows]
    if rows.size == 0:
        return rows, weights
    key = np.hstack([np.asarray(X[rows], dtype=np.float64),
                     np.asarray(targets[rows], dtype=np.float64).reshape(rows.size, -1)])
    key = key + 0.0  # -0.0 and 0.0 compare equal, so they must have the same bytes
    key = np.ascontiguousarray(key).view(np.dtype((np.void, key.dtype.itemsize * key.shape[1])))
    _, first, inverse = np.unique(key[:, 0], return_index=True, return_inverse=True)
    unit = weights is None or np.all(weights == 1)
    if first.size == rows.size and unit:
        return rows, None
    totals = np.bincount(inverse.reshape(-1), weights=weights, minlength=first.size)
    return rows[first], totals
