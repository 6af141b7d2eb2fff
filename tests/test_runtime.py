"""Several processes: forked children are refused at once, skntk's persistent cache of
compiled programs is on by default, reused across processes and never breaks import,
compilations are counted."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from skntk import HybridNTKClassifier
from skntk._runtime import count_compilations

from .conftest import blobs

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

FORK_SCRIPT = textwrap.dedent("""
    import json, multiprocessing, time, warnings
    import numpy as np
    from skntk import HybridNTKClassifier

    warnings.simplefilter("ignore")  # JAX warns at os.fork() after it started
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    KW = dict(hidden_layer_sizes=(4,), max_sgd_epochs=2, switch=None, ntk_phase=None,
              validation_fraction=None, random_state=0)

    def child(conn):
        try:
            HybridNTKClassifier(**KW).fit(X, y)
            conn.send("fitted")
        except Exception as error:
            conn.send(f"{type(error).__name__}: {error}")

    def in_forked_child():
        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=child, args=(send,))
        start = time.perf_counter()
        process.start()
        process.join(timeout=30)
        hung = process.is_alive()
        if hung:
            process.kill()
            process.join()
        message = receive.recv() if receive.poll(0.1) else None
        return dict(message=message, hung=hung, seconds=time.perf_counter() - start)

    out = {"before": in_forked_child()}  # JAX not started yet in this process
    HybridNTKClassifier(**KW).fit(X, y)
    out["after"] = in_forked_child()
    print(json.dumps(out))
""")


def test_fit_in_a_child_forked_after_jax_started_fails_at_once_with_the_fix():
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                          timeout=180, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # a fork before JAX started is fine
    assert out["before"] == dict(out["before"], message="fitted", hung=False)
    after = out["after"]
    assert not after["hung"] and after["seconds"] < 20
    message = after["message"]
    assert message.startswith("RuntimeError: This process")
    for part in ("os.fork()", "after JAX had started", "hang", "'spawn'", "'forkserver'",
                 "loky"):
        assert part in message, part


def test_fit_in_a_forked_child_of_this_process_fails_within_seconds():
    # The test process has run JAX; the child must not reach it.
    import multiprocessing
    import warnings

    X, y = blobs(n_samples=30, n_features=3, n_classes=2)
    HybridNTKClassifier(hidden_layer_sizes=(4,), max_sgd_epochs=1, switch=None,
                        ntk_phase=None, validation_fraction=None).fit(X, y)
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child(conn):
        try:
            HybridNTKClassifier(hidden_layer_sizes=(4,)).fit(X, y)
            conn.send("fitted")
        except Exception as error:
            conn.send(type(error).__name__)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        process = ctx.Process(target=child, args=(send,))
        process.start()
    process.join(timeout=20)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail("the forked child hung")
    assert receive.poll(1) and receive.recv() == "RuntimeError"


CACHE_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import jax
    events = {"hits": 0}
    def listener(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            events["hits"] += 1
    jax.monitoring.register_event_listener(listener)
    import numpy as np
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import skntk
    from skntk._runtime import count_compilations, program_cache_dir
    X, y = np.random.RandomState(0).normal(size=(40, 3)), np.arange(40) % 2
    with count_compilations() as compiled:
        clf = skntk.HybridNTKClassifier(hidden_layer_sizes=(4,), max_sgd_epochs=4,
                                        switch="fixed_epoch", switch_epoch=2, ntk_epochs=2,
                                        validation_fraction=None, random_state=0).fit(X, y)
    fit_hits = events["hits"]
    proba = clf.predict_proba(X)
    prediction_hits = events["hits"] - fit_hits
    # a JAX program of the caller's own, outside skntk: never read from or written to
    jax.jit(lambda a: a * 3.0 + 1.0)(np.ones(5, np.float32)).block_until_ready()
    print(json.dumps(dict(hits=fit_hits, prediction_hits=prediction_hits,
                          hits_after=events["hits"],
                          compilations=compiled.count, cache_dir=program_cache_dir(),
                          jax_cache_dir=jax.config.jax_compilation_cache_dir,
                          proba=proba.tolist(),
                          warnings=[str(w.message) for w in caught])))
""")


def _run_cache_script(env_value, home):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(home))
    for name in ("SKNTK_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR",
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(name, None)
    if env_value is not None:
        env["SKNTK_COMPILATION_CACHE"] = env_value
    done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_program_cache_is_on_by_default_reused_by_later_processes_and_changes_no_result(
        tmp_path):
    default_dir = tmp_path / "skntk" / "jax"
    first = _run_cache_script(None, tmp_path)
    assert first["cache_dir"] == str(default_dir) and first["hits"] == 0
    assert first["warnings"] == []
    n_files = len(os.listdir(default_dir))
    assert n_files >= first["compilations"] > 0
    second = _run_cache_script(None, tmp_path)
    # every program of the fit is read back instead of compiled ...
    assert second["hits"] == second["compilations"] == first["compilations"]
    assert first["prediction_hits"] == 0 and second["prediction_hits"] >= 1
    # ... the caller's own program is neither read nor written, JAX's config untouched
    assert second["hits_after"] == second["hits"] + second["prediction_hits"] and len(os.listdir(default_dir)) == n_files
    assert first["jax_cache_dir"] is second["jax_cache_dir"] is None
    off = _run_cache_script("0", tmp_path / "unused")
    assert off["cache_dir"] is None and off["hits"] == 0 and off["warnings"] == []
    assert not (tmp_path / "unused").exists()
    # compiled, written and read back: the same numbers to the last bit
    assert first["proba"] == second["proba"] == off["proba"]


def _unusable_directory(tmp_path, case):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    if case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only directories")
        path = tmp_path / "read_only"
        path.mkdir()
        path.chmod(0o500)
        return path
    return blocker if case == "file" else blocker / "cache"


@pytest.mark.parametrize("case", ["file", "under_a_file", "read_only"])
def test_an_unusable_cache_directory_warns_with_the_fix_and_turns_the_cache_off(
        tmp_path, case):
    from skntk import _runtime

    path = _unusable_directory(tmp_path, case)
    before = _runtime.program_cache_dir()
    try:
        with pytest.warns(UserWarning) as caught:
            assert _runtime.configure_program_cache(path) is None
        assert _runtime.program_cache_dir() is None
    finally:
        if case == "read_only":
            path.chmod(0o700)
        _runtime.configure_program_cache(before)
    message = str(caught[0].message)
    assert "SKNTK_COMPILATION_CACHE" in message and str(path) in message
    assert "Error" in message  # the problem, e.g. NotADirectoryError: Not a directory


def test_import_succeeds_with_an_unusable_cache_directory(tmp_path):
    path = _unusable_directory(tmp_path, "under_a_file")
    out = _run_cache_script(str(path), tmp_path)
    assert out["cache_dir"] is None and out["hits"] == 0
    (message,) = out["warnings"]
    assert "SKNTK_COMPILATION_CACHE" in message and str(path) in message
    assert "NotADirectoryError" in message
    assert len(out["proba"]) == 40  # and skntk works without the cache


def test_program_store_writes_whole_entries_once_and_leaves_no_temporary_file(tmp_path):
    from skntk._runtime import _ProgramStore

    store = _ProgramStore(tmp_path)
    assert store.get("k") is None
    store.put("k", b"first")
    store.put("k", b"second")  # an entry is never rewritten: every writer writes the same
    assert store.get("k") == b"first"
    assert os.listdir(tmp_path) == ["k" + _ProgramStore.SUFFIX]


def test_program_cache_block_restores_the_callers_jax_state(tmp_path):
    from jax._src import compilation_cache

    from skntk import _runtime

    before = _runtime.program_cache_dir()
    try:
        assert _runtime.configure_program_cache(tmp_path / "c") == str(tmp_path / "c")
        state = (compilation_cache._cache, jax.config.jax_compilation_cache_dir,
                 jax.config.jax_persistent_cache_min_compile_time_secs)
        with _runtime.program_cache():
            with _runtime.program_cache():  # nested: one installation
                assert compilation_cache._cache is not None
                assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
            assert compilation_cache._cache is not None
        assert (compilation_cache._cache, jax.config.jax_compilation_cache_dir,
                jax.config.jax_persistent_cache_min_compile_time_secs) == state
    finally:
        _runtime.configure_program_cache(before)


def test_enable_compilation_cache_sets_jax_config_and_the_environment(tmp_path, monkeypatch):
    import skntk
    from jax.experimental.compilation_cache import compilation_cache

    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        monkeypatch.delenv(name, raising=False)
    before = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
    try:
        path = skntk.enable_compilation_cache(tmp_path / "c", min_compile_time_secs=0.5)
        assert path == str((tmp_path / "c").resolve()) and os.path.isdir(path)
        assert jax.config.jax_compilation_cache_dir == path
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.5
        assert os.environ["JAX_COMPILATION_CACHE_DIR"] == path
        assert float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == 0.5
    finally:  # leave this process as it was
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        compilation_cache.reset_cache()


def test_count_compilations_counts_new_shapes_only():
    f = jax.jit(lambda x: x * 2 + 1)
    with count_compilations() as compiled:
        f(np.ones(3, np.float32))
        f(np.ones(3, np.float32))
    assert compiled.count == 1
    with count_compilations() as compiled:
        f(np.zeros(3, np.float32))
        assert compiled.count == 0
        f(np.ones(4, np.float32))
    assert compiled.count == 1


def test_grid_search_in_threads_equals_the_serial_search():
    """n_jobs=2 in joblib's threading backend (the documented way to use n_jobs with
    skntk) shares the compiled programs between threads and gives the serial results."""
    import joblib
    from sklearn.model_selection import GridSearchCV

    X, y = blobs(n_samples=90, n_features=4, n_classes=3, seed=3)
    estimator = HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=6,
                                    switch="fixed_epoch", switch_epoch=3, random_state=0)
    grid = {"learning_rate": [0.02, 0.05, 0.1]}
    serial = GridSearchCV(estimator, grid, cv=3, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend="threading"):
        threaded = GridSearchCV(estimator, grid, cv=3, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(threaded.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])
    np.testing.assert_allclose(threaded.best_estimator_.predict_proba(X),
                               serial.best_estimator_.predict_proba(X), rtol=1e-5, atol=1e-6)
