"""Data-parallel training on 4 virtual CPU devices equals one device.

JAX fixes its device count at start-up, so the multi-device run happens in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, warnings
    import jax, jax.numpy as jnp, numpy as np
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler
    from skntk import HybridNTKClassifier
    from skntk._devices import data_mesh, replicate, shard_rows
    from skntk._mlp import init_mlp_params, params_to_jax
    from skntk._phases import frozen_jacobian_step
    from skntk._sgd import sgd_epoch

    warnings.simplefilter("ignore")
    X, y = load_digits(return_X_y=True)
    X, y = StandardScaler().fit_transform(X)[:301], y[:301]  # 301: rows do not split evenly
    out = {"n_devices": len(jax.devices()), "phases": {}}
    for phase in ["frozen_jacobian", "linearized", "kernel"]:
        kw = dict(hidden_layer_sizes=(16,), max_sgd_epochs=4, ntk_epochs=3, switch="ntk_norm",
                  switch_threshold=0.0, ntk_phase=phase, batch_size=30, ntk_monitor_size=40,
                  random_state=0)
        one = HybridNTKClassifier(devices=1, **kw).fit(X, y)
        many = HybridNTKClassifier(**kw).fit(X, y)
        out["phases"][phase] = {
            "proba": float(np.max(np.abs(one.predict_proba(X) - many.predict_proba(X)))),
            "loss": float(np.max(np.abs(one.history_["train_loss"] - many.history_["train_loss"]))),
            "statistic": float(np.nanmax(np.abs(one.history_["switch_statistic"]
                                                 - many.history_["switch_statistic"])
                                         / np.nanmax(one.history_["switch_statistic"]))),
        }
    mesh = data_mesh()
    Xj = jnp.asarray(X, jnp.float32)
    Yj = jnp.asarray(np.eye(10, dtype=np.float32)[y])
    p = replicate(params_to_jax(init_mlp_params((64, 16, 10), np.random.RandomState(0))), mesh)
    # The data-parallel programs on row-split (or, for SGD, replicated) data against the
    # same programs on one device: equal results, computed where the data lives.
    p1 = params_to_jax(init_mlp_params((64, 16, 10), np.random.RandomState(0)))
    order = np.arange(330, dtype=np.int32) % 301

    def gap(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    def devices_of(tree):
        return min(len(leaf.sharding.device_set) for leaf in jax.tree.leaves(tree))

    sgd_many = sgd_epoch(p, replicate(Xj, mesh), replicate(Yj, mesh), order, 301, 0.1, 30, mesh)
    sgd_one = sgd_epoch(p1, Xj, Yj, order, 301, 0.1, 30, None)
    Xs, Ys = shard_rows(Xj, mesh), shard_rows(Yj, mesh)
    ws = shard_rows(np.ones(301, np.float32), mesh)
    step_many = frozen_jacobian_step(p, p, Xs, Ys, 0.1, ws)
    host = [jnp.asarray(np.asarray(a)) for a in (Xs, Ys, ws)]
    step_one = frozen_jacobian_step(p1, p1, *host[:2], 0.1, host[2])
    from skntk._switch import _monitor_kernel_jit
    X_monitor = shard_rows(Xj[:41], mesh)
    K_many = _monitor_kernel_jit(p, X_monitor, 41)
    K_one = _monitor_kernel_jit(p1, jnp.asarray(np.asarray(X_monitor)), 41)
    out["programs"] = {
        "gap": {"sgd": gap(sgd_many, sgd_one), "frozen_jacobian": gap(step_many, step_one),
                "monitor": gap(K_many, K_one) / float(np.max(np.abs(np.asarray(K_one))))},
        "devices": {"sgd": devices_of(sgd_many), "frozen_jacobian": devices_of(step_many),
                    "monitor": devices_of(K_many)},
        "row_shards": sorted({s.data.shape[0] for s in Xs.addressable_shards}
                             | {s.data.shape[0] for s in X_monitor.addressable_shards}),
    }
    from skntk.ntk import empirical_ntk
    X_big = replicate(jnp.asarray(np.tile(X, (3, 1)), jnp.float32), mesh)  # 903 rows > 1 block
    K_one = np.asarray(empirical_ntk(p, X_big, block_size=128))
    K_many = np.asarray(empirical_ntk(p, X_big, block_size=128, mesh=mesh))
    out["kernel_blocks"] = float(np.max(np.abs(K_one - K_many)) / np.max(np.abs(K_one)))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def four_devices():
    # The suite's own XLA flags (conftest.py) first: a repeated flag takes its last value.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("phase", ["frozen_jacobian", "linearized", "kernel"])
def test_multi_device_fit_equals_single_device(four_devices, phase):
    diff = four_devices["phases"][phase]
    assert diff["proba"] < 1e-5
    assert diff["loss"] < 1e-5
    assert diff["statistic"] < 1e-5


def test_sgd_epoch_full_batch_step_and_monitor_run_on_every_device(four_devices):
    # Each device holds a quarter of the (padded) rows: 304 / 4 of the training set,
    # 44 / 4 of the monitor subset; the programs give the one-device results on all four.
    programs = four_devices["programs"]
    assert four_devices["n_devices"] == 4
    assert programs["row_shards"] == [11, 76]
    assert programs["devices"] == {"sgd": 4, "frozen_jacobian": 4, "monitor": 4}
    assert programs["gap"]["sgd"] < 1e-5
    assert programs["gap"]["frozen_jacobian"] < 1e-6
    assert programs["gap"]["monitor"] < 1e-6


def test_kernel_row_blocks_split_over_devices_equal_one_device(four_devices):
    assert four_devices["kernel_blocks"] < 1e-6
