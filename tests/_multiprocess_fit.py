"""One process of the multi-process JAX test (``tests/test_multiprocess.py``).

Run as ``python -m tests._multiprocess_fit PROCESS_ID N_PROCESSES PORT`` (``N_PROCESSES``
1: a single process on as many local CPU devices as ``XLA_FLAGS`` gives). Fits every NTK
phase, and kernel diagnostics, on the global devices and prints one JSON line of
predictions and histories.
"""

import json
import sys

import jax
import numpy as np


def main(process_id, n_processes, port):
    if n_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                                   num_processes=n_processes, process_id=process_id,
                                   initialization_timeout=60)
    from skntk import HybridNTKClassifier

    rng = np.random.RandomState(0)
    X = rng.normal(size=(48, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8)
    common = dict(hidden_layer_sizes=(8,), batch_size=16, max_sgd_epochs=4,
                  switch="fixed_epoch", switch_epoch=2, ntk_epochs=3, random_state=0,
                  devices=jax.devices())
    fits = {
        "sgd": HybridNTKClassifier(**dict(common, ntk_phase=None, kernel_diagnostics=True,
                                          ntk_monitor_size=16)),
        "linearized": HybridNTKClassifier(**dict(common, ntk_phase="linearized")),
        "frozen_jacobian": HybridNTKClassifier(**dict(common, ntk_phase="frozen_jacobian")),
        "kernel": HybridNTKClassifier(**dict(common, ntk_phase="kernel")),
    }
    out = {"n_devices": len(jax.devices())}
    for name, estimator in fits.items():
        estimator.fit(X, y)
        predicted = estimator.predict_proba(X)
        history = {key: np.asarray(value, dtype=float).tolist()
                   for key, value in estimator.history_.items()
                   if key != "elapsed_s" and np.asarray(value).dtype.kind in "fiu"}
        out[name] = dict(predicted=np.asarray(predicted, dtype=float).tolist(), history=history)
    print(json.dumps(out))
    if n_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
