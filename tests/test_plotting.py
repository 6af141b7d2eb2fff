"""The Display objects of skntk.plotting."""

import copy
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skntk import HybridNTKClassifier

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skntk.plotting import SwitchStatisticDisplay, TrainingHistoryDisplay  # noqa: E402

TINY = dict(hidden_layer_sizes=(16,), max_sgd_epochs=5, ntk_epochs=3, random_state=0)


@pytest.fixture(scope="module")
def data():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def fixed_epoch_fit(data):
    return HybridNTKClassifier(**TINY, switch="fixed_epoch", switch_epoch=3).fit(*data)


@pytest.fixture(scope="module")
def param_norm_fit(data):
    """A criterion that holds before the budget ends: a scouting run of the same
    (seeded) trajectory gives the statistic, and the threshold is put between the first
    value that falls below all earlier ones and the smallest earlier value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scout = HybridNTKClassifier(**TINY, switch="param_norm", switch_window=1,
                                    switch_threshold=0).fit(*data)
    statistic = scout.history_["switch_statistic"][:TINY["max_sgd_epochs"]]
    drop = next(i for i in range(1, len(statistic)) if statistic[i] < statistic[:i].min())
    threshold = float(np.sqrt(statistic[:drop].min() * statistic[drop]))
    clf = HybridNTKClassifier(**TINY, switch="param_norm", switch_window=1,
                              switch_threshold=threshold).fit(*data)
    assert clf.switch_epoch_ == drop + 1
    return clf


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _x(line):
    return line.get_xdata()[0]


def test_training_history_draws_on_given_ax_with_twin_and_marks_switch(fixed_epoch_fit):
    fig, ax = plt.subplots()
    display = TrainingHistoryDisplay.from_estimator(fixed_epoch_fit, ax=ax)
    assert display.ax_ is ax and display.figure_ is fig
    assert display.accuracy_ax_ is not ax and display.accuracy_ax_.figure is fig
    assert len(fig.axes) == 2  # ax and its twin
    assert [_x(line) for line in display.switch_lines_] == [fixed_epoch_fit.switch_epoch_] == [3]
    assert len(display.ntk_spans_) == 1
    np.testing.assert_array_equal(display.lines_["train_loss"].get_xdata(),
                                  fixed_epoch_fit.history_["epoch"])
    np.testing.assert_allclose(display.lines_["val_accuracy"].get_ydata(),
                               fixed_epoch_fit.history_["val_accuracy"])


def test_training_history_default_draws_two_panels(fixed_epoch_fit):
    display = TrainingHistoryDisplay.from_estimator(fixed_epoch_fit)
    assert display.figure_.axes == [display.ax_, display.accuracy_ax_]
    assert [_x(line) for line in display.switch_lines_] == [3, 3]
    # The NTK phase is shaded from the switch to the last epoch.
    span = display.ntk_spans_[0].get_extents().transformed(display.ax_.transData.inverted())
    assert span.x0 == pytest.approx(3) and span.x1 == pytest.approx(
        fixed_epoch_fit.history_["epoch"][-1])
    assert set(display.lines_) == {"train_loss", "val_loss", "train_accuracy", "val_accuracy"}


def test_training_history_draws_on_a_pair_of_axes(fixed_epoch_fit):
    fig, (left, right) = plt.subplots(1, 2)
    display = TrainingHistoryDisplay.from_estimator(fixed_epoch_fit, ax=(left, right))
    assert display.ax_ is left and display.accuracy_ax_ is right and len(fig.axes) == 2


def test_plain_sgd_without_validation_marks_no_switch(data):
    clf = HybridNTKClassifier(**TINY, switch=None, ntk_phase=None,
                              validation_fraction=None).fit(*data)
    display = TrainingHistoryDisplay.from_estimator(clf)
    assert display.switch_lines_ == [] and display.ntk_spans_ == []
    assert set(display.lines_) == {"train_loss", "train_accuracy"}


def test_switch_statistic_marks_switch_and_threshold(param_norm_fit):
    clf = param_norm_fit
    assert clf.switch_reached_
    fig, ax = plt.subplots()
    display = SwitchStatisticDisplay.from_estimator(clf, ax=ax)
    assert display.ax_ is ax and display.figure_ is fig and ax.get_yscale() == "log"
    assert _x(display.switch_line_) == clf.switch_epoch_
    assert display.threshold_line_.get_ydata()[0] == pytest.approx(clf.switch_threshold_)
    # The curve ends at the switch epoch, the first below the threshold.
    epochs, values = display.line_.get_xdata(), display.line_.get_ydata()
    np.testing.assert_array_equal(epochs, np.arange(1, clf.switch_epoch_ + 1))
    assert np.all(values[:-1] > clf.switch_threshold_) and values[-1] < clf.switch_threshold_


def test_switch_statistic_shows_the_fitted_criterion_after_set_params(param_norm_fit):
    clf = copy.deepcopy(param_norm_fit).set_params(switch="fixed_epoch")
    display = SwitchStatisticDisplay.from_estimator(clf)
    assert display.criterion == "param_norm"
    assert "param_norm" in display.ax_.get_ylabel()


def test_switch_statistic_of_a_scouting_run_has_no_threshold_line(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = HybridNTKClassifier(**TINY, switch="ntk_norm", switch_window=1,
                                  switch_threshold=0, ntk_monitor_size=32).fit(*data)
    display = SwitchStatisticDisplay.from_estimator(clf)
    assert display.threshold_line_ is None
    assert _x(display.switch_line_) == clf.switch_epoch_ == 5
    assert "budget" in display.switch_line_.get_label()


def test_displays_accept_a_fitted_pipeline(data):
    pipe = make_pipeline(StandardScaler(), HybridNTKClassifier(
        **TINY, switch="fixed_epoch", switch_epoch=2)).fit(*data)
    display = TrainingHistoryDisplay.from_estimator(pipe)
    assert _x(display.switch_lines_[0]) == 2


@pytest.mark.parametrize("display", [TrainingHistoryDisplay, SwitchStatisticDisplay])
def test_unfitted_estimator_raises_not_fitted_error(display):
    with pytest.raises(NotFittedError, match="not fitted"):
        display.from_estimator(HybridNTKClassifier())
    with pytest.raises(NotFittedError):
        display.from_estimator(make_pipeline(StandardScaler(), HybridNTKClassifier()))


def test_switch_statistic_without_a_monitored_criterion_raises(fixed_epoch_fit):
    with pytest.raises(ValueError, match="records no switch statistic"):
        SwitchStatisticDisplay.from_estimator(fixed_epoch_fit)


def test_other_fitted_estimator_raises_type_error(data):
    fitted = StandardScaler().fit(data[0])
    with pytest.raises(TypeError, match="HybridNTKClassifier"):
        TrainingHistoryDisplay.from_estimator(fitted)


@pytest.mark.parametrize("display", [TrainingHistoryDisplay, SwitchStatisticDisplay])
def test_missing_matplotlib_says_how_to_install_it(display, fixed_epoch_fit, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        display.from_estimator(fixed_epoch_fit)
