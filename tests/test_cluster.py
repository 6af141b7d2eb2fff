"""scikit-learn's joblib on cluster engines: ``GridSearchCV`` under
``joblib.parallel_backend("dask")`` on a local Dask cluster (worker processes on
loopback), and Ray's joblib backend where Ray is installed, give the serial results,
with the workers reading compiled programs from skntk's cache."""

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skntk import HybridNTKClassifier
from skntk import _runtime

from . import _cache_probe
from .conftest import blobs

GRID = {"learning_rate": [0.03, 0.1]}


def _search():
    estimator = HybridNTKClassifier(hidden_layer_sizes=(8,), batch_size=16, max_sgd_epochs=4,
                                    switch="fixed_epoch", switch_epoch=2, ntk_epochs=3,
                                    random_state=0)
    return GridSearchCV(estimator, GRID, cv=3, n_jobs=-1)


@pytest.fixture
def shared_cache(tmp_path, monkeypatch):
    """skntk's cache in a fresh directory, for this process and the workers it starts."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(_runtime.CACHE_ENV_VAR, str(directory))
    before = _runtime.program_cache_dir()
    _runtime.configure_program_cache(directory)
    yield str(directory)
    _runtime.configure_program_cache(before)


def _serial(X, y):
    with joblib.parallel_config(n_jobs=1):
        return _search().set_params(n_jobs=1).fit(X, y)


def _assert_same_search(parallel, serial, X):
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(parallel.cv_results_["split0_test_score"],
                                  serial.cv_results_["split0_test_score"])
    np.testing.assert_array_equal(parallel.best_estimator_.predict_proba(X),
                                  serial.best_estimator_.predict_proba(X))


def test_grid_search_on_a_local_dask_cluster_equals_the_serial_search(shared_cache):
    distributed = pytest.importorskip("distributed")
    X, y = blobs(n_samples=72, n_features=4, n_classes=3, seed=5)
    serial = _serial(X, y)  # fills the cache
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  protocol="tcp") as cluster, \
            distributed.Client(cluster) as client:
        assert set(client.run(_cache_probe.cache_dir).values()) == {shared_cache}
        client.run(_cache_probe.start)
        with joblib.parallel_backend("dask"):
            parallel = _search().fit(X, y)
        hits = client.run(_cache_probe.hits)
    _assert_same_search(parallel, serial, X)
    assert sum(hits.values()) > 0, hits  # the workers read programs the serial search wrote


def test_grid_search_on_ray_equals_the_serial_search(shared_cache):
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    X, y = blobs(n_samples=72, n_features=4, n_classes=3, seed=5)
    serial = _serial(X, y)
    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {_runtime.CACHE_ENV_VAR: shared_cache}})
    try:
        with joblib.parallel_backend("ray"):
            parallel = _search().fit(X, y)
    finally:
        ray.shutdown()
    _assert_same_search(parallel, serial, X)
