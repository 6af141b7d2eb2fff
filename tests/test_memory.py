"""``max_kernel_bytes`` against the memory a fit really holds at once.

The budget checks run before training; these tests fit with the smallest budget that
the checks let through and measure what is alive meanwhile: the JAX arrays (sampled
at every call and return of a function of skntk), the host memory of the dense kernel
phase (``tracemalloc``, which sees numpy's buffers) and the temporaries of the
compiled kernel computations (XLA's ``memory_analysis``), which neither of the other
two can see.
"""

import os
import sys
import tracemalloc
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import skntk
from skntk import HybridNTKClassifier
from skntk._mlp import init_mlp_params, params_to_jax
from skntk._training import _check_budgets
from skntk.ntk import (_features_jit, _fill_rows, _kernel_jit, _working_set_bytes,
                       kernel_nbytes, ntk_gram)

from .conftest import blobs

SKNTK_DIR = os.path.dirname(skntk.__file__)
N_TRAIN, N_VAL, MONITOR, WINDOW = 600, 30, 64, 8
X, y = blobs(n_samples=N_TRAIN + N_VAL, n_features=4, n_classes=3)
X_TRAIN, Y_TRAIN, X_VAL, Y_VAL = X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]
LAYER_SIZES = (4, 8, 3)


class LiveJaxArrays:
    """Peak bytes of the JAX arrays made inside the ``with`` block, sampled at every
    call and return of a Python function of skntk."""

    def __enter__(self):
        self._before = jax.live_arrays()  # kept, so that their ids stay theirs
        self._ids = {id(a) for a in self._before}
        self.peak = 0
        sys.setprofile(self._sample)
        return self

    def _sample(self, frame, event, arg):
        if event in ("call", "return") and frame.f_code.co_filename.startswith(SKNTK_DIR):
            live = sum(a.nbytes for a in jax.live_arrays()
                       if id(a) not in self._ids and not a.is_deleted())
            self.peak = max(self.peak, live)

    def __exit__(self, *exc_info):
        sys.setprofile(None)


def smallest_budget(est):
    """The smallest ``max_kernel_bytes`` that the checks of ``fit`` let through."""
    low, high = 1, 2**40
    while low < high:
        middle = (low + high) // 2
        try:
            _check_budgets(est.set_params(max_kernel_bytes=middle)._training_config(),
                           LAYER_SIZES, N_TRAIN, N_VAL)
            high = middle
        except ValueError:
            low = middle + 1
    return low


def make(switch, ntk_phase, kernel_solver):
    return HybridNTKClassifier(
        hidden_layer_sizes=(8,), max_sgd_epochs=WINDOW + 2, switch=switch, switch_threshold=0.0,
        switch_window=WINDOW, ntk_monitor_size=MONITOR, ntk_phase=ntk_phase,
        kernel_solver=kernel_solver, ntk_epochs=2, validation_fraction=None, random_state=0)


def fit(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the threshold 0 never holds
        return est.fit(X_TRAIN, Y_TRAIN, X_VAL, Y_VAL)


MONITOR_KERNEL = kernel_nbytes(MONITOR, MONITOR)
TRAINING_KERNEL = kernel_nbytes(N_TRAIN, N_TRAIN)


@pytest.mark.parametrize("switch, ntk_phase, kernel_solver, least_alive", [
    # K_0, kept by "ntk_norm" (its new kernel lives only inside one compiled call)
    ("ntk_norm", None, "auto", MONITOR_KERNEL),
    # the last switch_window kernels of "kernel_distance" and the new one
    ("kernel_distance", "frozen_jacobian", "auto", (WINDOW + 1) * MONITOR_KERNEL),
    ("kernel_distance", "kernel", "matrix_free", (WINDOW + 1) * MONITOR_KERNEL),
    # the float32 training kernel (its float64 copies are numpy: see the next test)
    ("param_norm", "kernel", "dense", TRAINING_KERNEL),
    ("kernel_distance", "kernel", "dense", TRAINING_KERNEL),
])
def test_live_jax_arrays_during_fit_stay_within_max_kernel_bytes(switch, ntk_phase,
                                                                 kernel_solver, least_alive):
    est = make(switch, ntk_phase, kernel_solver)
    budget = smallest_budget(est)
    with pytest.raises(ValueError, match="max_kernel_bytes"):  # the checks are that tight
        fit(make(switch, ntk_phase, kernel_solver).set_params(max_kernel_bytes=budget - 1))
    with LiveJaxArrays() as live:
        fit(est.set_params(max_kernel_bytes=budget))
    assert est.kernel_solver_ == (None if ntk_phase != "kernel" else kernel_solver)
    assert least_alive <= live.peak <= budget


def test_monitor_budget_message_names_the_kernels_kept_beside_the_new_one():
    est = make("kernel_distance", None, "auto")
    budget = smallest_budget(est)
    working = budget - (WINDOW + 1) * MONITOR_KERNEL
    with pytest.raises(ValueError, match=(
            rf"monitor kernel of shape \(64, 64\) \(float32\) needs about .* plus "
            rf".* held at the same time by the last {WINDOW} monitor kernels, kept by "
            rf"switch='kernel_distance' \(switch_window={WINDOW}\)\), more than the budget "
            rf".*lower `ntk_monitor_size` \(got 64\) or `switch_window` \(got {WINDOW}\)")):
        fit(est.set_params(max_kernel_bytes=budget - 1))
    # a window of one keeps one kernel: 7 fewer than the budget counted above
    assert smallest_budget(make("kernel_distance", None, "auto").set_params(
        switch_window=1)) == working + 2 * MONITOR_KERNEL
    assert smallest_budget(make("ntk_norm", None, "auto")) == working + 2 * MONITOR_KERNEL


@pytest.mark.parametrize("switch", ["param_norm", "kernel_distance"])
def test_host_and_jax_memory_of_the_dense_kernel_phase_stay_within_max_kernel_bytes(switch):
    est = make(switch, "kernel", "dense")
    budget = smallest_budget(est)
    fit(est.set_params(max_kernel_bytes=budget))  # compiles everything first
    with LiveJaxArrays() as live:
        fit(est)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        fit(est)
        host = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    # At the eigendecomposition eight float32 kernels' worth of float64 arrays are alive
    # on the host (counted as TRAINING_KERNEL_COPIES = 8; 5 used to be counted).
    assert host > 7.5 * TRAINING_KERNEL
    # The two peaks are not simultaneous: their sum bounds what is held at any time.
    assert host + live.peak <= budget


def _measured_bytes(params, X1, X2, block, per_logit):
    """Peak bytes of ``empirical_ntk(params, X1, X2, block_size=block)`` from the compiled
    computations: output, stored factors and temporaries."""
    symmetric = X2 is None
    n1 = X1.shape[0]
    if n1 <= block:
        if symmetric and not per_logit:
            compiled = ntk_gram.lower(params, X1).compile()
        else:
            compiled = jax.jit(lambda p, a, b: _kernel_jit(p, a, b, per_logit=per_logit)).lower(
                params, X1, X2).compile()
        analysis = compiled.memory_analysis()
        return analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    X2_ = X1 if symmetric else X2
    features = _features_jit(params, X2_, per_logit=per_logit)
    n_classes = params[-1][0].shape[1]
    shape = (n1, X2_.shape[0]) + ((n_classes, n_classes) if per_logit else ())
    K = jnp.zeros(shape, jnp.float32)
    tile = _fill_rows.lower(K, params, X1, features, 0, block=block, symmetric=symmetric,
                            per_logit=per_logit).compile().memory_analysis()
    factors = _features_jit.lower(params, X2_, per_logit=per_logit).compile().memory_analysis()
    stored = sum(a.nbytes for a in jax.tree.leaves(features))
    return max(K.nbytes + stored + tile.temp_size_in_bytes,
               factors.temp_size_in_bytes + factors.output_size_in_bytes)


@pytest.mark.parametrize("layer_sizes", [(4, 3), (4, 8, 3), (10, 32, 16, 5),
                                         (10, 32, 16, 8, 5)])
@pytest.mark.parametrize("n1, n2, block", [(64, None, 64), (150, 90, 512), (700, None, 256),
                                           (300, 200, 64)])
@pytest.mark.parametrize("per_logit", [False, True])
def test_working_memory_estimate_covers_the_compiled_kernel(layer_sizes, n1, n2, block,
                                                            per_logit):
    # XLA keeps the Gram matrices of every layer until they are combined: with three
    # and more layers, more than the three row tiles once counted.
    rng = np.random.RandomState(0)
    params = params_to_jax(init_mlp_params(layer_sizes, rng))
    X1 = jnp.asarray(rng.normal(size=(n1, layer_sizes[0])), jnp.float32)
    X2 = None if n2 is None else jnp.asarray(rng.normal(size=(n2, layer_sizes[0])),
                                             jnp.float32)
    n_classes = layer_sizes[-1]
    estimate = (kernel_nbytes(n1, n2 or n1, np.float32,
                              n_classes if per_logit else None)
                + _working_set_bytes(layer_sizes, n1, n2 or n1, block, n2 is None, per_logit,
                                     4))
    assert _measured_bytes(params, X1, X2, block, per_logit) <= estimate
