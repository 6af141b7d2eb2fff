"""Multi-process JAX: two local processes joined by ``jax.distributed.initialize`` on
127.0.0.1 (CPU collectives through gloo) fit like one process on the same number of
devices, for every NTK phase and with kernel diagnostics."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
"""Seconds before a process is killed: a hung collective fails the test."""


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(process_id, n_processes, port, n_local_devices):
    # The suite's own XLA flags (conftest.py) first: a repeated flag takes its last value.
    flags = (f"{os.environ.get('XLA_FLAGS', '')} "
             f"--xla_force_host_platform_device_count={n_local_devices}")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip(),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                         os.environ.get("PYTHONPATH")])))
    return subprocess.Popen(
        [sys.executable, "-m", "tests._multiprocess_fit", str(process_id), str(n_processes),
         str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _result(process):
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"a process did not finish within {TIMEOUT_S} s (hung collective?)")
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _assert_same_fits(a, b):
    assert a["n_devices"] == b["n_devices"] == 2
    assert a.keys() == b.keys()
    for name in a.keys() - {"n_devices"}:
        np.testing.assert_array_equal(a[name]["predicted"], b[name]["predicted"], err_msg=name)
        assert a[name]["history"].keys() == b[name]["history"].keys(), name
        for column, values in a[name]["history"].items():
            np.testing.assert_array_equal(np.array(values, dtype=float),
                                          np.array(b[name]["history"][column], dtype=float),
                                          err_msg=f"{name}: {column}")


@pytest.mark.skipif(sys.platform == "win32", reason="gloo collectives: Linux and macOS")
def test_two_processes_fit_like_one_process_on_as_many_devices():
    port = _free_port()
    processes = [_start(i, 2, port, 1) for i in range(2)]
    try:
        first, second = (_result(p) for p in processes)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    single = _result(_start(0, 1, 0, 2))
    assert "kernel_alignment" in first["sgd"]["history"]  # kernel_diagnostics ran
    _assert_same_fits(first, second)
    _assert_same_fits(first, single)
