"""Shared timing helpers of the benchmark scripts."""

import time

import jax


def best_time(fn, repeat=5):
    """Best wall time of ``fn()`` in seconds over ``repeat`` calls (outputs blocked on)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def first_call_time(fn):
    """Seconds of the first call (compilation included)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start
