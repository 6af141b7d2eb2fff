"""Bucket sizes and zero-weight padding: padded fits equal unpadded ones, and fits of
sizes in one bucket share every compiled program."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import skntk._buckets as buckets
from skntk import HybridNTKClassifier
from skntk._buckets import bucket_size, pad_rows, padded_monitor_size, row_weights
from skntk._runtime import count_compilations


def test_bucket_ladder_keeps_three_leading_binary_digits():
    assert [bucket_size(n) for n in (1, 16, 17, 100, 128, 129, 144, 145, 255, 256, 257)] == \
        [16, 16, 32, 112, 128, 144, 144, 160, 256, 256, 288]
    assert bucket_size(1293) == bucket_size(1294) == 1408
    assert bucket_size(1617) == 1664


def test_buckets_waste_at_most_an_eighth_and_are_fixed_points():
    sizes = np.arange(1, 20_000)
    padded = np.array([bucket_size(n) for n in sizes])
    assert np.all(padded >= sizes)
    assert np.all(np.diff(padded) >= 0)
    large = sizes >= 128
    assert np.max((padded[large] - sizes[large]) / sizes[large]) <= 1 / 8
    assert np.all(padded[~large] - sizes[~large] < buckets.MIN_BUCKET_STEP)
    assert all(bucket_size(b) == b for b in np.unique(padded))
    # few shapes: 8 per doubling above 128
    assert len(np.unique(padded[(sizes > 1024) & (sizes <= 2048)])) == 8


def test_bucket_of_zero_rows_is_refused():
    with pytest.raises(ValueError, match="at least one row"):
        bucket_size(0)


def test_padding_helpers():
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(pad_rows(a, 5), [[0, 1], [2, 3], [4, 5], [0, 0], [0, 0]])
    assert pad_rows(a, 3) is a
    with pytest.raises(ValueError, match="Cannot pad 3 rows down to 2"):
        pad_rows(a, 2)
    np.testing.assert_array_equal(row_weights(2, 4), [1, 1, 0, 0])
    assert row_weights(2, 4).dtype == np.float32
    # the monitor subset: ntk_monitor_size rows as they are, smaller subsets to a bucket
    assert padded_monitor_size(256, 256) == 256
    assert padded_monitor_size(135, 256) == 144
    assert padded_monitor_size(250, 256) == 256
    assert padded_monitor_size(4, 4) == 4


# ------------------------------------------------------------------- padded == unpadded

CONFIGS = [
    dict(switch="ntk_norm", switch_threshold=0.0, ntk_phase="frozen_jacobian"),
    dict(switch="kernel_distance", switch_threshold=0.0, ntk_phase="linearized",
         ntk_solver="gd"),
    dict(switch="param_norm", switch_threshold=0.0, ntk_phase=None),
    dict(switch=None, ntk_phase="kernel"),
    # The defaults: kernel_velocity and L-BFGS. Its exact line search and curvature
    # pairs amplify the rounding of sums over 135 or 144 rows from one iteration to
    # the next (1e-6 after the first, 1e-3 of the loss after the third), so this one
    # is compared at a looser tolerance, and its accuracies to one or two samples.
    dict(switch="kernel_velocity", switch_threshold=0.0, ntk_phase="linearized"),
]


def _fit(X, y, **params):
    clf = HybridNTKClassifier(hidden_layer_sizes=(16, 8), max_sgd_epochs=4, ntk_epochs=3,
                              batch_size=24, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


@pytest.mark.parametrize("config", CONFIGS,
                         ids=lambda c: f"{c['switch']}-{c['ntk_phase']}-{c.get('ntk_solver')}")
def test_padded_fit_equals_unpadded_fit(digits_small, monkeypatch, config):
    X, y = digits_small
    X, y = X[:150], y[:150]  # 135 training rows (bucket 144), 15 validation rows (16)
    padded = _fit(X, y, **config)
    monkeypatch.setattr(buckets, "bucket_size", lambda n: n)  # no padding at all
    unpadded = _fit(X, y, **config)
    lbfgs = padded.ntk_solver_ == "lbfgs"
    rtol, param_rtol, param_atol = (5e-3, 5e-2, 5e-3) if lbfgs else (2e-5, 1e-4, 1e-6)
    for key, value in padded.history_.items():
        if key == "elapsed_s":
            continue
        if value.dtype.kind == "f":
            # With L-BFGS one of 135 predictions may flip near the decision boundary.
            atol = 2 / 135 if lbfgs and key.endswith("accuracy") else 1e-6
            np.testing.assert_allclose(value, unpadded.history_[key], rtol=rtol, atol=atol,
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(value, unpadded.history_[key], err_msg=key)
    assert np.isfinite(padded.history_["val_loss"]).all()
    for a, b in zip(padded.coefs_ + padded.intercepts_, unpadded.coefs_ + unpadded.intercepts_):
        np.testing.assert_allclose(a, b, rtol=param_rtol, atol=param_atol)
    np.testing.assert_allclose(padded.predict_proba(X), unpadded.predict_proba(X),
                               rtol=param_rtol, atol=param_atol)


def test_switch_statistics_ignore_monitor_padding(digits_small, monkeypatch):
    # 60 training rows: the monitor subset (ntk_monitor_size=256) holds all 60, padded
    # to 64; its kernels are masked, so the statistic is the unpadded one.
    X, y = digits_small
    kw = dict(switch="ntk_norm", switch_threshold=0.0, ntk_phase=None,
              validation_fraction=None)
    padded = _fit(X[:60], y[:60], **kw)
    monkeypatch.setattr(buckets, "bucket_size", lambda n: n)
    unpadded = _fit(X[:60], y[:60], **kw)
    statistic = padded.history_["switch_statistic"]
    assert np.isfinite(statistic[2:]).all() and (statistic[2:] > 0).all()
    np.testing.assert_allclose(statistic, unpadded.history_["switch_statistic"], rtol=1e-4)


# ------------------------------------------------------------------- compiled once

@pytest.mark.parametrize("ntk_phase", ["frozen_jacobian", "linearized", None])
def test_second_fit_in_the_same_bucket_compiles_nothing(digits_small, ntk_phase):
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), max_sgd_epochs=4, ntk_epochs=2, switch="ntk_norm",
              ntk_phase=ntk_phase, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = HybridNTKClassifier(**kw).fit(X[:200], y[:200])  # 180 + 20 rows
        first.predict(X[:300])
        with count_compilations() as compiled:
            # 184 + 21 rows: the same buckets (192 and 32); other values of every
            # hyperparameter that is not a shape
            second = HybridNTKClassifier(**kw).set_params(
                learning_rate=0.02, ntk_learning_rate=0.3, switch_window=2,
                switch_threshold=1.0, max_sgd_epochs=3, ntk_epochs=3,
                random_state=1).fit(X[:205], y[:205])
            second.predict(X[:17])
    assert compiled.count == 0
    assert second.n_iter_ >= 1


def test_a_new_bucket_compiles_again(digits_small):
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), max_sgd_epochs=2, switch=None, ntk_phase=None,
              validation_fraction=None, random_state=0)
    HybridNTKClassifier(**kw).fit(X[:100], y[:100])  # bucket 112
    with count_compilations() as compiled:
        HybridNTKClassifier(**kw).fit(X[:113], y[:113])  # bucket 128
    assert compiled.count >= 1


MEMORY_SCRIPT = textwrap.dedent("""
    import json, warnings
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler
    from skntk import HybridNTKClassifier
    from skntk._runtime import count_compilations

    def rss_mb():
        with open("/proc/self/statm") as f:
            import os
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    warnings.simplefilter("ignore")
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = HybridNTKClassifier(max_sgd_epochs=5, ntk_epochs=3, random_state=0)
    clf.fit(X[:200], y[:200]).predict(X[:50])
    before = rss_mb()
    with count_compilations() as compiled:
        for n in range(201, 214):
            clf.fit(X[:n], y[:n]).predict(X[:50])
    print(json.dumps({"growth_mb": rss_mb() - before, "compilations": compiled.count}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")
def test_learning_curve_of_14_sizes_compiles_once_and_keeps_memory_flat():
    # The estimator's defaults, (128, 128) hidden units, 14 fits on 200..213 rows.
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["compilations"] == 0
    assert result["growth_mb"] < 50


def test_compiled_programs_are_dropped_beyond_the_live_shape_limit(digits_small, monkeypatch):
    import jax

    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), max_sgd_epochs=1, switch=None, ntk_phase=None,
              validation_fraction=None, random_state=0)
    monkeypatch.setattr(buckets, "MAX_LIVE_SHAPES", 2)
    monkeypatch.setattr(buckets, "_live_shapes", set())
    other_library = jax.jit(lambda x: x - 1)
    other_library(np.ones(3, np.float32))
    for n in (100, 120, 100):  # buckets 112, 128: two shapes, the limit
        HybridNTKClassifier(**kw).fit(X[:n], y[:n])
    with count_compilations() as compiled:
        HybridNTKClassifier(**kw).fit(X[:120], y[:120])
    assert compiled.count == 0
    HybridNTKClassifier(**kw).fit(X[:140], y[:140])  # a third shape: drops the programs
    assert len(buckets._live_shapes) == 1
    with count_compilations() as compiled:
        HybridNTKClassifier(**kw).fit(X[:100], y[:100])
    assert compiled.count >= 1
    with count_compilations() as compiled:
        other_library(np.ones(3, np.float32))  # other libraries keep theirs
    assert compiled.count == 0
