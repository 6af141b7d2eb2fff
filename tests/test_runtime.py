"""Several processes: forked children are refused at once, the persistent compilation
cache is opt-in and reused across processes, compilations are counted."""

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
    import json, sys
    import jax
    events = {"hits": 0}
    def listener(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            events["hits"] += 1
    jax.monitoring.register_event_listener(listener)
    import numpy as np
    import skntk
    from skntk._runtime import count_compilations
    X, y = np.random.RandomState(0).normal(size=(40, 3)), np.arange(40) % 2
    with count_compilations() as compiled:
        skntk.HybridNTKClassifier(hidden_layer_sizes=(4,), max_sgd_epochs=2, switch=None,
                                  ntk_phase=None, validation_fraction=None).fit(X, y)
    print(json.dumps(dict(hits=events["hits"], compilations=compiled.count,
                          cache_dir=jax.config.jax_compilation_cache_dir)))
""")


def _run_cache_script(env_value):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for name in ("SKNTK_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR",
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(name, None)
    if env_value is not None:
        env["SKNTK_COMPILATION_CACHE"] = env_value
    done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_persistent_cache_is_off_unless_asked_and_reused_by_later_processes(tmp_path):
    off = _run_cache_script(None)
    assert off["cache_dir"] is None and off["hits"] == 0
    cache = tmp_path / "cache"
    first = _run_cache_script(str(cache))
    assert first["cache_dir"] == str(cache.resolve()) and first["hits"] == 0
    assert len(os.listdir(cache)) >= first["compilations"] > 0
    second = _run_cache_script(str(cache))
    # every program of the fit is read back instead of compiled
    assert second["hits"] == second["compilations"] == first["compilations"]


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
