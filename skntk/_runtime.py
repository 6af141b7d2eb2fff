"""Process-level runtime helpers: skntk's persistent cache of compiled programs, fork
detection and a count of compilations.

skntk keeps the programs it compiles in a directory (:func:`program_cache_dir`) and
reads them back in later processes: worker processes of ``n_jobs``, Dask or Ray
workers, later runs of a script. It does so without changing JAX's configuration for
the caller's own code: the cache is in use only while skntk fits or predicts
(:func:`program_cache`). :func:`enable_compilation_cache` turns on JAX's own cache for
every JAX program of the process instead.
"""

import contextlib
import functools
import os
import tempfile
import threading
import uuid
import warnings
from pathlib import Path

import jax

CACHE_ENV_VAR = "SKNTK_COMPILATION_CACHE"
"""Environment variable, read when skntk is imported: the directory of skntk's cache of
compiled programs; unset: :func:`default_cache_dir`; ``0``, ``off``, ``false``,
``none`` or empty: no cache."""

CACHE_OFF_VALUES = ("", "0", "off", "false", "no", "none")
"""Values of :data:`CACHE_ENV_VAR` (case-insensitive) that turn the cache off."""

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
"""The event JAX records once per executable it compiles or loads from the persistent
cache (``jax._src.dispatch.BACKEND_COMPILE_EVENT``)."""


# ------------------------------------------------------------ persistent compilation cache

def default_cache_dir():
    """``$XDG_CACHE_HOME/skntk/jax`` (``~/.cache/skntk/jax`` when it is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "skntk", "jax")


def enable_compilation_cache(cache_dir=None, *, min_compile_time_secs=0.0, propagate=True):
    """Turn on JAX's persistent compilation cache for every JAX program of this process
    and its children.

    skntk caches its own compiled programs by default (see the user guide, "Several
    processes"); this function is for caching the caller's other JAX programs too. It
    changes JAX's global configuration (``jax_compilation_cache_dir`` and
    ``jax_persistent_cache_min_compile_time_secs``) for every JAX user in the process;
    while it is set, skntk uses this cache rather than its own.

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


# ------------------------------------------------------ skntk's own cache, scoped to skntk

class _ProgramStore:
    """Compiled programs, one file per key, written atomically (a temporary file renamed
    into place), so that processes sharing the directory never read a partial entry.
    Implements JAX's ``CacheInterface`` (``get``/``put``)."""

    SUFFIX = "-skntk"

    def __init__(self, path):
        self._path = Path(path)

    def get(self, key):
        try:
            return (self._path / f"{key}{self.SUFFIX}").read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key, value):
        target = self._path / f"{key}{self.SUFFIX}"
        if target.exists():
            return
        temporary = self._path / f".{key}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            temporary.write_bytes(value)
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


_store = None
_store_lock = threading.Lock()
_store_depth = 0
_saved_jax_cache_state = None


def _unusable_reason(path):
    """Why ``path`` cannot hold the cache (a string), or ``None`` if it can: it is
    created if missing and must accept a new file."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None


def configure_program_cache(cache_dir):
    """Use ``cache_dir`` for skntk's compiled programs (``None``: no cache).

    Returns the absolute directory in use, or ``None`` when the cache is off or
    ``cache_dir`` is unusable (then with a ``UserWarning`` that names
    :data:`CACHE_ENV_VAR`, the directory and the problem). Never raises for a bad
    directory: the cache only saves time.
    """
    global _store
    if cache_dir is None:
        _store = None
        return None
    path = str(Path(cache_dir).expanduser().absolute())
    reason = _unusable_reason(path)
    if reason is not None:
        warnings.warn(
            f"skntk cannot keep its compiled programs in {path!r} ({reason}), so it runs "
            f"without a persistent compilation cache and compiles again in every process. "
            f"Set the environment variable {CACHE_ENV_VAR} to a writable directory, or to "
            f"0 to turn the cache off without this warning.", UserWarning, stacklevel=2)
        _store = None
        return None
    _store = _ProgramStore(path)
    return path


def configure_program_cache_from_environment():
    """:func:`configure_program_cache` from :data:`CACHE_ENV_VAR` (called when skntk is
    imported): its directory, :func:`default_cache_dir` when it is unset, or no cache
    for an off value."""
    value = os.environ.get(CACHE_ENV_VAR)
    if value is None:
        return configure_program_cache(default_cache_dir())
    if value.strip().lower() in CACHE_OFF_VALUES:
        return configure_program_cache(None)
    return configure_program_cache(value.strip())


def program_cache_dir():
    """The directory of skntk's cache of compiled programs, or ``None`` when it is off."""
    store = _store
    return None if store is None else str(store._path)


def _jax_cache_module():
    try:
        from jax._src import compilation_cache
        from jax._src import config as jax_config
        compilation_cache._cache_initialized_mutex  # noqa: B018 - the internals used below
        return compilation_cache, jax_config.persistent_cache_min_compile_time_secs
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        return None


def _install(store):
    """Make JAX read and write compiled programs through ``store`` (under JAX's lock);
    returns whether it did. Steps aside when the caller configured JAX's own cache."""
    global _saved_jax_cache_state
    found = _jax_cache_module()
    if found is None or jax.config.jax_compilation_cache_dir is not None:
        return False
    cc = found[0]
    with cc._cache_initialized_mutex:
        if cc._cache is not None:  # someone else's cache is in place
            return False
        _saved_jax_cache_state = (cc._cache_initialized, cc._cache_checked, cc._cache_used)
        cc._cache = store
        cc._cache_initialized = True
        cc._cache_checked = False  # decide again whether the cache is used
    return True


def _uninstall():
    cc = _jax_cache_module()[0]
    with cc._cache_initialized_mutex:
        cc._cache = None
        cc._cache_initialized, cc._cache_checked, cc._cache_used = _saved_jax_cache_state


@contextlib.contextmanager
def program_cache():
    """Within the block, JAX reads compiled programs from skntk's cache and writes new
    ones to it (all of them: no minimum compile time in the calling thread).

    JAX holds one persistent cache per process, so while a block runs, JAX programs
    compiled by other threads of the process use it too; outside every block, JAX is as
    the caller configured it. Blocks nest and may run in several threads. A no-op when
    the cache is off, or when the caller configured JAX's own persistent cache
    (``jax_compilation_cache_dir``), which then serves skntk too.
    """
    global _store_depth
    store = _store
    installed = False
    if store is not None:
        with _store_lock:
            if _store_depth > 0:
                _store_depth += 1
                installed = True
            elif _install(store):
                _store_depth = 1
                installed = True
    if not installed:
        yield
        return
    try:
        with _jax_cache_module()[1](0.0):
            yield
    finally:
        with _store_lock:
            _store_depth -= 1
            if _store_depth == 0:
                _uninstall()


def uses_program_cache(method):
    """Decorator: run ``method`` inside :func:`program_cache`."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with program_cache():
            return method(*args, **kwargs)
    return wrapper


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
