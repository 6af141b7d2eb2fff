"""Process-level runtime helpers: the persistent compilation cache, fork detection and a
count of compilations.

Nothing here changes JAX's configuration unless asked: by calling
:func:`enable_compilation_cache`, or by setting the environment variable
``SKNTK_COMPILATION_CACHE`` before skntk is imported.
"""

import contextlib
import os
import threading
from pathlib import Path

import jax

CACHE_ENV_VAR = "SKNTK_COMPILATION_CACHE"
"""Environment variable: a directory to use as JAX's persistent compilation cache,
enabled when skntk is imported (empty or unset: not enabled)."""

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
"""The event JAX records once per executable it compiles or loads from the persistent
cache (``jax._src.dispatch.BACKEND_COMPILE_EVENT``)."""


# ------------------------------------------------------------ persistent compilation cache

def default_cache_dir():
    """``$XDG_CACHE_HOME/skntk/jax`` (``~/.cache/skntk/jax`` when it is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "skntk", "jax")


def enable_compilation_cache(cache_dir=None, *, min_compile_time_secs=0.0, propagate=True):
    """Turn on JAX's persistent compilation cache for this process and its children.

    JAX compiles every jitted function when it first meets its input shapes, in every
    new process. With the cache, compiled programs are written to ``cache_dir`` and
    read back by later processes (worker processes of ``n_jobs``, later runs of a
    script) instead of compiled again. skntk never turns it on by itself: this changes
    JAX's global configuration (``jax_compilation_cache_dir`` and
    ``jax_persistent_cache_min_compile_time_secs``) for every JAX user in the process.
    Setting the environment variable ``SKNTK_COMPILATION_CACHE=<directory>`` before
    skntk is imported does the same as calling this function with that directory.

    Parameters
    ----------
    cache_dir : str, path-like or None, default=None
        Directory of the cache, created if missing. ``None``: :func:`default_cache_dir`
        (``~/.cache/skntk/jax``). It holds executable code that JAX loads and runs:
        never point it at a directory that others may write to.
    min_compile_time_secs : float, default=0.0
        Programs that compiled faster than this (seconds) are not written. JAX's own
        default is 1 s, which would leave out most of skntk's programs (about 0.05 to
        0.5 s each on a CPU).
    propagate : bool, default=True
        Also set JAX's environment variables ``JAX_COMPILATION_CACHE_DIR`` and
        ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` in ``os.environ``, so that
        processes started afterwards (joblib's loky workers behind scikit-learn's
        ``n_jobs``, ``subprocess``, ``multiprocessing`` with "spawn" or "forkserver")
        use the same cache from their start. Workers that are already running (loky
        reuses its workers between calls) keep their configuration.

    Returns
    -------
    cache_dir : str
        The absolute directory in use.

    Raises
    ------
    OSError
        If ``cache_dir`` cannot be created.

    Examples
    --------
    >>> import skntk
    >>> skntk.enable_compilation_cache("/tmp/skntk-cache")  # doctest: +SKIP
    '/tmp/skntk-cache'
    """
    path = str(Path(default_cache_dir() if cache_dir is None else cache_dir)
               .expanduser().resolve())
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    # JAX decides once per process, at its first compilation, whether the cache is in
    # use; make it decide again.
    from jax.experimental.compilation_cache import compilation_cache
    compilation_cache.reset_cache()
    if propagate:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = repr(
            float(min_compile_time_secs))
    return path


def enable_compilation_cache_from_environment():
    """:func:`enable_compilation_cache` in ``$SKNTK_COMPILATION_CACHE`` when that variable
    is set and not empty (called when skntk is imported); returns the directory or
    ``None``."""
    cache_dir = os.environ.get(CACHE_ENV_VAR, "").strip()
    if not cache_dir:
        return None
    return enable_compilation_cache(cache_dir)


# ------------------------------------------------------------------------ fork detection

_jax_started_at_fork = False
_forked_after_jax_started = False


def _jax_backends_started():
    """Whether this process has initialised a JAX backend (started its runtime threads)."""
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        return True  # assume the worst: a fork after importing JAX is not safe


def _before_fork():
    global _jax_started_at_fork
    _jax_started_at_fork = _jax_backends_started()


def _after_fork_in_child():
    global _forked_after_jax_started
    _forked_after_jax_started = _forked_after_jax_started or _jax_started_at_fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def check_not_forked():
    """Refuse to run JAX computations in a process forked after JAX started.

    ``os.fork()`` copies the memory of the parent but none of its threads; JAX's
    runtime, started in the parent, relies on threads, so the child's first JAX
    computation would wait for them forever.

    Raises
    ------
    RuntimeError
        In a process created by ``os.fork()`` (e.g. the "fork" start method of
        :mod:`multiprocessing`, the default on Linux before Python 3.14) after JAX
        had initialised its backend in the parent. The message names the fix.
    """
    if _forked_after_jax_started:
        raise RuntimeError(
            f"This process (pid {os.getpid()}) was created by os.fork() after JAX had "
            f"started in its parent process (e.g. by the 'fork' start method of "
            f"multiprocessing, the default on Linux before Python 3.14). JAX's runtime "
            f"threads do not survive a fork, so any JAX computation here would hang "
            f"forever. Start the worker processes with the 'spawn' or 'forkserver' "
            f"start method instead (multiprocessing.get_context('spawn'), or "
            f"concurrent.futures.ProcessPoolExecutor(mp_context=...)), or use "
            f"joblib's default 'loky' backend, which scikit-learn's n_jobs uses.")


# ------------------------------------------------------------------ compilation counting

_count_lock = threading.Lock()
_compilations = 0
_compile_seconds = 0.0
_listening = False

_COMPILE_TIME_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                                  _BACKEND_COMPILE_EVENT})
"""The events whose durations make up the time JAX spends compiling: tracing,
lowering and the backend's compilation (``jax._src.dispatch``)."""


def _on_duration_event(event, duration_secs, **kwargs):
    global _compilations, _compile_seconds
    if event in _COMPILE_TIME_EVENTS:
        with _count_lock:
            _compile_seconds += duration_secs
            if event == _BACKEND_COMPILE_EVENT:
                _compilations += 1


def _listen():
    global _listening
    with _count_lock:
        if not _listening:
            jax.monitoring.register_event_duration_secs_listener(_on_duration_event)
            _listening = True


def compile_seconds():
    """Seconds this process has spent tracing, lowering and compiling JAX programs
    since the first call (process-wide: fits in other threads add to it too)."""
    _listen()
    return _compile_seconds


class CompilationCount:
    """Number of executables JAX compiled (or loaded from the persistent cache) in this
    process inside a :func:`count_compilations` block; ``count`` is final when the block
    ends."""

    def __init__(self):
        self._start = _compilations
        self._end = None

    @property
    def count(self):
        return (_compilations if self._end is None else self._end) - self._start


@contextlib.contextmanager
def count_compilations():
    """Count the JAX compilations of a block, through :mod:`jax.monitoring`.

    Every jitted function or eager JAX operation that meets a new input shape,
    dtype or static argument costs one compilation (or one load from the persistent
    compilation cache); a block that reuses compiled code counts 0.

    Yields
    ------
    counter : CompilationCount
        ``counter.count`` holds the number so far, and the total after the block.

    Examples
    --------
    >>> with count_compilations() as compiled:  # doctest: +SKIP
    ...     clf.fit(X, y)
    >>> compiled.count  # doctest: +SKIP
    0
    """
    _listen()
    counter = CompilationCount()
    try:
        yield counter
    finally:
        counter._end = _compilations
