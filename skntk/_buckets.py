"""Training shapes from a small fixed set: bucket sizes and zero-weight padding rows.

JAX compiles a jitted function once for every new input shape. A fit pads each of its
sample-indexed arrays (training set, validation set, monitor subset of the kernel
switch criteria, arrays of the network NTK phases) with zero rows up to a *bucket
size*, and gives every row a weight: 1 for a real sample, 0 for padding. Every loss,
gradient, metric, kernel statistic and full-batch step weights its rows, so padding
changes no result beyond float rounding, and fits whose sizes fall into the same bucket
(cross-validation folds, the points of a learning curve, refits) run the same compiled
code.

The buckets keep the three leading binary digits of the size (a float with a 3-bit
mantissa): 128, 144, 160, ..., 240, 256, 288, 320, ..., i.e. eight buckets per
doubling, and multiples of :data:`MIN_BUCKET_STEP` below 128. Why this ladder:

- padding costs at most 1/8 of the rows (about 6 % on average over sizes spread
  evenly on a log scale) in the parts that touch every row: the per-epoch metrics
  and the full-batch NTK steps. The SGD epoch pays nothing for it: batches made
  only of padding are never run (:func:`skntk._sgd.sgd_epoch`);
- the number of compiled shapes grows with the logarithm of the size: eight per
  doubling, about 100 between 128 rows and a million, so compiled state stays bounded
  over any sequence of fits, and sizes within a few percent of each other (the folds
  of a cross-validation, a fine learning curve) usually share one bucket.

Powers of two times the batch size would compile fewer shapes, but waste up to half
of every full-batch computation.
"""

import sys
import threading
from typing import Any, NamedTuple

import jax
import numpy as np

from ._devices import shard_rows

BUCKET_SIGNIFICANT_BITS = 3
"""Leading binary digits kept by :func:`bucket_size`: ``2**3 = 8`` buckets per doubling."""

MIN_BUCKET_STEP = 16
"""Spacing of the buckets below ``16 * 2**BUCKET_SIGNIFICANT_BITS = 128`` rows."""

MAX_LIVE_SHAPES = 16
"""Most fit shapes (see :func:`use_shapes`) whose compiled programs a process keeps; a
compiled program costs about 3 to 7 MB of memory on a CPU."""


def bucket_size(n):
    """The bucket of ``n`` rows: the smallest ladder size ``>= n``.

    Parameters
    ----------
    n : int
        Number of real rows, ``n >= 1``.

    Returns
    -------
    size : int
        ``n`` rounded up to a multiple of ``max(MIN_BUCKET_STEP, 2**(floor(log2 n) -
        BUCKET_SIGNIFICANT_BITS))``; ``n <= size < n * 9 / 8`` for ``n >= 128``,
        ``size < n + MIN_BUCKET_STEP`` below.

    Raises
    ------
    ValueError
        If ``n < 1``.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"A bucket holds at least one row; got n={n}.")
    step = max(MIN_BUCKET_STEP, 1 << max(0, n.bit_length() - 1 - BUCKET_SIGNIFICANT_BITS))
    return -(-n // step) * step


def row_weights(n, n_rows, dtype=np.float32):
    """Weights of ``n`` real rows followed by ``n_rows - n`` padding rows.

    Returns
    -------
    weights : ndarray of shape (n_rows,)
        1 for the first ``n`` entries, 0 after, in ``dtype``.
    """
    weights = np.zeros(n_rows, dtype)
    weights[:n] = 1
    return weights


def pad_rows(array, n_rows):
    """``array`` with zero rows appended up to ``n_rows`` rows (numpy; a copy only when
    rows are added).

    Parameters
    ----------
    array : ndarray of shape (n, ...)
    n_rows : int
        ``>= n``.

    Returns
    -------
    padded : ndarray of shape (n_rows, ...), same dtype
    """
    array = np.asarray(array)
    n_pad = n_rows - array.shape[0]
    if n_pad < 0:
        raise ValueError(f"Cannot pad {array.shape[0]} rows down to {n_rows}.")
    if n_pad == 0:
        return array
    return np.concatenate([array, np.zeros((n_pad, *array.shape[1:]), array.dtype)])


class Rows(NamedTuple):
    """Sample-indexed arrays padded to a bucket.

    Fields
    ------
    X : jax array of shape (n_rows, n_features), float32
        Inputs; rows ``n:`` are zeros.
    Y : jax array of shape (n_rows, n_classes), float32
        One-hot targets; rows ``n:`` are zeros.
    weights : jax array of shape (n_rows,), float32
        The sample weights of the ``n`` real rows (1 unless given), 0 for the padding.
    n : int
        Number of real rows.
    """

    X: Any
    Y: Any
    weights: Any
    n: int


def padded_rows(X, Y, place=jax.device_put, n_rows=None, weights=None):
    """Pad ``(X, Y)`` to their bucket (or to ``n_rows``) and place them on the device.

    Parameters
    ----------
    X : ndarray of shape (n, n_features), float32
    Y : ndarray of shape (n, n_classes), float32
    place : callable, default=jax.device_put
        Puts one numpy array on the device(s), e.g. a replication over a mesh.
    n_rows : int or None, default=None
        Padded size; ``None`` for ``bucket_size(n)``.
    weights : ndarray of shape (n,) or None, default=None
        Sample weights of the real rows (``None``: 1 each); the padding weighs 0.

    Returns
    -------
    rows : Rows
    """
    n = X.shape[0]
    n_rows = bucket_size(n) if n_rows is None else n_rows
    padded_weights = row_weights(n, n_rows)
    if weights is not None:
        padded_weights[:n] = weights
    return Rows(place(pad_rows(X, n_rows)), place(pad_rows(Y, n_rows)),
                place(padded_weights), n)


def padded_monitor_size(m, monitor_size):
    """Rows of the padded monitor subset of ``m`` real rows (before a multi-device
    split): ``m`` itself when it is ``monitor_size`` (``ntk_monitor_size``, one fixed
    shape), otherwise ``min(bucket_size(m), monitor_size)``."""
    return max(m, min(bucket_size(m), monitor_size))


def monitor_rows(X_monitor, monitor_size, mesh=None):
    """The monitor subset of the kernel switch criteria, padded to a fixed row count.

    The subset holds ``m = min(ntk_monitor_size, n_samples)`` rows; when ``m`` is below
    ``ntk_monitor_size`` (small training sets) it is padded to
    ``min(bucket_size(m), monitor_size)`` zero rows (which the criteria mask out of
    every kernel), then split over the mesh's devices (:func:`skntk._devices.shard_rows`
    pads further to a multiple of their number).

    Parameters
    ----------
    X_monitor : ndarray of shape (m, n_features), float32
    monitor_size : int
        ``ntk_monitor_size``, ``>= m``.
    mesh : jax.sharding.Mesh or None, default=None

    Returns
    -------
    X_monitor : jax array of shape (m', n_features), m' >= m
    """
    return shard_rows(pad_rows(X_monitor, padded_monitor_size(X_monitor.shape[0], monitor_size)),
                      mesh)


# ------------------------------------------------------------------ bounded compiled state

_live_shapes = set()
_live_shapes_lock = threading.Lock()  # fits may run in threads (n_jobs, threading backend)


def clear_compiled_programs():
    """Drop the compiled programs of every jitted function of skntk (not those of other
    libraries); later calls compile again, or read the persistent compilation cache."""
    for name, module in list(sys.modules.items()):
        if name == "skntk" or name.startswith("skntk."):
            for obj in list(vars(module).values()):
                if callable(getattr(obj, "clear_cache", None)) and hasattr(obj, "lower"):
                    obj.clear_cache()
    _live_shapes.clear()


def use_shapes(key):
    """Note that a fit runs the programs compiled for ``key`` (everything that shapes
    them: layer sizes, batch size, buckets, phase, devices).

    Buckets bound the compiled programs of fits of nearby sizes; this bounds them over
    any sequence of fits: when a fit brings the number of distinct keys seen since the
    last clearing above :data:`MAX_LIVE_SHAPES`, :func:`clear_compiled_programs` runs
    first, so a process holds the programs of at most that many keys (a few hundred MB
    at most) however many sizes and architectures it fits. Workflows that cycle through
    fewer keys (the folds of a grid search, a learning curve of up to 16 sizes) never
    clear.
    """
    with _live_shapes_lock:
        if key in _live_shapes:
            return
        if len(_live_shapes) >= MAX_LIVE_SHAPES:
            clear_compiled_programs()
        _live_shapes.add(key)
