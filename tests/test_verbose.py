"""What ``verbose`` prints during fit."""

import re
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning

from skntk import HybridNTKClassifier

TINY = dict(hidden_layer_sizes=(16,), max_sgd_epochs=5, ntk_epochs=3, random_state=0)
EPOCH_LINE = re.compile(r"^\[(sgd|ntk)\] epoch +(\d+) ")


@pytest.fixture(scope="module")
def data():
    return load_iris(return_X_y=True)


def _fit(data, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return HybridNTKClassifier(**{**TINY, **params}).fit(*data)


@pytest.mark.parametrize("params, n_switch_lines", [
    (dict(switch="fixed_epoch", switch_epoch=3), 1),
    (dict(switch="ntk_norm", switch_threshold=0, ntk_monitor_size=32), 0),  # never switches
    (dict(switch="fixed_epoch", switch_epoch=2, ntk_phase="kernel", ntk_epochs=np.inf), 1),
    (dict(switch=None, ntk_phase=None), 0),
])
def test_verbose_prints_one_line_per_epoch_and_one_at_the_switch(data, capsys, params,
                                                                 n_switch_lines):
    clf = _fit(data, verbose=1, **params)
    lines = capsys.readouterr().out.splitlines()
    history = clf.history_
    assert len(lines) == len(history["epoch"]) + n_switch_lines + (clf.ntk_phase is not None)

    epoch_lines = [line for line in lines if EPOCH_LINE.match(line)]
    assert len(epoch_lines) == len(history["epoch"])
    for line, epoch, phase, statistic in zip(epoch_lines, history["epoch"], history["phase"],
                                             history["switch_statistic"]):
        assert EPOCH_LINE.match(line).groups() == (phase, str(epoch))
        for field in ("train loss", "acc", "val loss"):
            assert field in line
        # The statistic only on the epochs where the criterion checked it.
        assert ("switch statistic" in line) == (not np.isnan(statistic))
        assert "nan" not in line
        times = re.search(r"training (\d+\.\d+) s \+ compiling (\d+\.\d+) s$", line)
        assert times, "training and compilation seconds end the line"
        training, compiling = map(float, times.groups())
        elapsed = history["elapsed_s"][epoch - 1]
        assert training >= -0.01 and compiling >= 0
        assert abs(training + compiling - elapsed) < 0.02

    other = [line for line in lines if not EPOCH_LINE.match(line)]
    switch_lines = [line for line in other if line.startswith("Switch criterion")]
    assert len(switch_lines) == n_switch_lines
    # One closing line for the NTK phase: why it stopped and which epoch it kept.
    stop_lines = [line for line in other if line.startswith("NTK phase stopped")]
    assert len(other) == n_switch_lines + len(stop_lines)
    if clf.ntk_phase is None:
        assert not stop_lines
    else:
        assert stop_lines == [lines[-1]] and f"({clf.ntk_stop_reason_})" in lines[-1]
    if n_switch_lines:
        assert f"epoch {clf.switch_epoch_}" in switch_lines[0]
        # The switch line comes right after the last SGD epoch.
        assert lines.index(switch_lines[0]) == clf.switch_epoch_


def test_verbose_line_shows_the_recorded_values(data, capsys):
    clf = _fit(data, verbose=1, switch="fixed_epoch", switch_epoch=3)
    first = capsys.readouterr().out.splitlines()[0]
    h = clf.history_
    assert f"train loss {h['train_loss'][0]:.4f}" in first
    assert f"val loss {h['val_loss'][0]:.4f} acc {h['val_accuracy'][0]:.4f}" in first


def test_verbose_zero_prints_nothing(data, capsys):
    _fit(data, verbose=0, switch="fixed_epoch", switch_epoch=3)
    _fit(data, verbose=0, switch="ntk_norm", switch_threshold=0, ntk_monitor_size=32)
    captured = capsys.readouterr()
    assert captured.out == ""
