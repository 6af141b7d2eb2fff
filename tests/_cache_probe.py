"""Counts persistent-cache hits in a worker process (used through Dask's and Ray's
``run`` calls by ``tests/test_cluster.py``)."""

import jax

_hits = []


def _listener(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
        _hits.append(1)


def start():
    """Start counting in this process (once)."""
    if not getattr(start, "started", False):
        jax.monitoring.register_event_listener(_listener)
        start.started = True


def hits():
    """Cache hits counted in this process so far."""
    return len(_hits)


def cache_dir():
    """skntk's cache directory in this process."""
    from skntk._runtime import program_cache_dir
    return program_cache_dir()
