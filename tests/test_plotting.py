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

from .conftest import blobs  # noqa: E402

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


def _shown_xtick_labels(ax):
    """Texts of the x tick labels inside the view, as drawn."""
    ax.figure.canvas.draw()
    low, high = ax.get_xlim()
    return [label.get_text() for tick, label in zip(ax.get_xticks(), ax.get_xticklabels())
            if low <= tick <= high]


def _is_whole_number(label):
    return label.replace("\N{MINUS SIGN}", "-").removeprefix("-").isdigit()


def _legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


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
    assert display.ax_.get_ylabel().startswith("parameter change")


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


# Epoch axes, labels, log loss and the kept NTK-phase epoch.

def test_one_epoch_history_shows_whole_epochs_around_the_point(data):
    clf = HybridNTKClassifier(**{**TINY, "max_sgd_epochs": 1}, switch=None,
                              ntk_phase=None).fit(*data)
    np.testing.assert_array_equal(clf.history_["epoch"], [1])
    display = TrainingHistoryDisplay.from_estimator(clf)
    for ax in (display.ax_, display.accuracy_ax_):
        assert ax.get_xlim() == (0, 2)  # one epoch of room either side
        assert _shown_xtick_labels(ax) == ["0", "1", "2"]
        assert ax.get_xlabel() == "epoch"


def test_one_epoch_switch_statistic_shows_whole_epochs(data):
    clf = HybridNTKClassifier(**{**TINY, "max_sgd_epochs": 1}, switch="param_norm",
                              switch_window=1, switch_threshold=0, ntk_phase=None).fit(*data)
    display = SwitchStatisticDisplay.from_estimator(clf)
    np.testing.assert_array_equal(display.line_.get_xdata(), [1])
    assert display.ax_.get_xlim() == (0, 2)
    assert _shown_xtick_labels(display.ax_) == ["0", "1", "2"]
    assert display.ax_.get_xlabel() == "epoch"


@pytest.mark.parametrize("epochs", [[3], [2, 3], [3, 4, 5], list(range(1, 41))])
def test_epoch_ticks_are_whole_numbers(epochs):
    display = SwitchStatisticDisplay(epochs, np.linspace(1.0, 0.1, len(epochs)), 0.05,
                                     switch_epoch=epochs[-1]).plot()
    labels = _shown_xtick_labels(display.ax_)
    assert len(labels) >= 2
    assert all(_is_whole_number(label) for label in labels), labels
    low, high = display.ax_.get_xlim()
    assert low <= min(epochs) - (1 if len(epochs) < 3 else 0)
    assert high >= max(epochs) + (1 if len(epochs) < 3 else 0)


def test_history_with_a_single_ntk_epoch_shows_whole_epochs():
    history = dict(epoch=np.array([1]), phase=np.array(["ntk"]), train_loss=np.array([0.5]),
                   val_loss=np.array([0.6]), train_accuracy=np.array([0.8]),
                   val_accuracy=np.array([0.7]))
    fig, ax = plt.subplots()
    display = TrainingHistoryDisplay(history, switch_epoch=0).plot(ax=ax)
    assert ax.get_xlim() == (-1, 2)  # the switch at 0 and the epoch at 1, padded
    labels = _shown_xtick_labels(ax)
    assert len(labels) == 4 and all(_is_whole_number(label) for label in labels), labels
    assert display.accuracy_ax_.get_xlim() == (-1, 2)


def test_switch_statistic_label_names_the_statistic_and_its_window(param_norm_fit, data):
    label = SwitchStatisticDisplay.from_estimator(param_norm_fit).ax_.get_ylabel()
    assert label == "parameter change $\\|\\theta_e - \\theta_{e-k}\\|_2$\n(k = 1 epoch)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = HybridNTKClassifier(**TINY, switch="kernel_velocity", switch_window=2,
                                  ntk_monitor_size=32).fit(*data)
    display = SwitchStatisticDisplay.from_estimator(clf)
    assert display.ax_.get_ylabel() == "kernel velocity $v_e / d_e$\n(k = 2 epochs)"
    assert display.ax_.get_xlabel() == "epoch"


@pytest.mark.parametrize("criterion, name", [
    ("kernel_velocity", "kernel velocity"), ("kernel_distance", "kernel distance"),
    ("ntk_norm", "NTK distance change"), ("param_norm", "parameter change"),
    ("my_criterion", "switch statistic (my_criterion)")])
def test_switch_statistic_labels_render(criterion, name):
    display = SwitchStatisticDisplay([1, 2, 3, 4], [np.nan, np.nan, 0.3, 0.1], 0.2,
                                     criterion=criterion, window=3).plot()
    label = display.ax_.get_ylabel()
    assert label.startswith(name) and label.endswith("(k = 3 epochs)")
    display.figure_.canvas.draw()  # the mathtext parses


def test_training_history_labels_say_what_is_drawn(fixed_epoch_fit):
    display = TrainingHistoryDisplay.from_estimator(fixed_epoch_fit)
    assert display.ax_.get_ylabel() == "loss (mean cross-entropy)"
    assert display.accuracy_ax_.get_ylabel() == "accuracy (fraction)"
    assert display.ax_.get_xlabel() == display.accuracy_ax_.get_xlabel() == "epoch"


@pytest.mark.parametrize("twin", [False, True])
def test_log_loss_sets_the_loss_axis_to_log_scale(fixed_epoch_fit, twin):
    ax = plt.subplots()[1] if twin else None
    display = TrainingHistoryDisplay.from_estimator(fixed_epoch_fit, ax=ax, log_loss=True)
    assert display.ax_.get_yscale() == "log"
    assert display.accuracy_ax_.get_yscale() == "linear"
    default = TrainingHistoryDisplay(fixed_epoch_fit.history_, 3).plot()
    assert default.ax_.get_yscale() == "linear"
    assert TrainingHistoryDisplay(fixed_epoch_fit.history_, 3).plot(
        log_loss=True).ax_.get_yscale() == "log"


def test_kept_ntk_phase_epoch_is_marked_when_the_phase_stopped_early(data):
    # Gradient descent with a large step improves the validation accuracy for an epoch,
    # then loses more than one standard error of it (45 validation samples): the phase
    # stops on the validation score and keeps an earlier state.
    clf = HybridNTKClassifier(**{**TINY, "ntk_epochs": "auto"}, switch="fixed_epoch",
                              switch_epoch=3, ntk_patience=2, ntk_solver="gd",
                              ntk_learning_rate=20.0, validation_fraction=0.3).fit(*data)
    assert clf.ntk_stop_reason_ == "validation_score" and clf.ntk_best_epoch_ > 0
    kept = clf.switch_epoch_ + clf.ntk_best_epoch_
    assert kept < clf.history_["epoch"][-1]  # not simply the last epoch
    display = TrainingHistoryDisplay.from_estimator(clf)
    assert display.kept_epoch == kept
    assert [_x(line) for line in display.kept_lines_] == [kept, kept]
    for ax in (display.ax_, display.accuracy_ax_):
        assert "kept NTK-phase epoch" in _legend_texts(ax)
    fig, ax = plt.subplots()
    twin = TrainingHistoryDisplay.from_estimator(clf, ax=ax)
    assert [_x(line) for line in twin.kept_lines_] == [kept]
    assert "kept NTK-phase epoch" in _legend_texts(ax)


def test_no_kept_epoch_marker_without_early_stop(fixed_epoch_fit):
    assert fixed_epoch_fit.ntk_stop_reason_ == "n_epochs"
    display = TrainingHistoryDisplay.from_estimator(fixed_epoch_fit)
    assert display.kept_epoch is None and display.kept_lines_ == []
    assert "kept NTK-phase epoch" not in _legend_texts(display.ax_)


def test_kernel_diagnostics_display_draws_the_recorded_values():
    from skntk.plotting import KernelDiagnosticsDisplay

    X, y = blobs(n_samples=60, n_features=4, n_classes=3, seed=1)
    clf = HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=4, switch="fixed_epoch",
                              switch_epoch=4, ntk_epochs=2, kernel_diagnostics=True,
                              switch_window=2, random_state=0).fit(X, y)
    display = KernelDiagnosticsDisplay.from_estimator(clf)
    assert len(display.axes_) == 4
    alignment = display.axes_[1].get_lines()[0]
    np.testing.assert_array_equal(alignment.get_xdata(), [1, 2, 3, 4])  # SGD epochs only
    np.testing.assert_allclose(alignment.get_ydata(), clf.history_["kernel_alignment"][:4])
    assert "K_{e-2}" in display.axes_[0].get_legend().get_texts()[1].get_text()
    assert display.axes_[3].get_yscale() == "log"
    plt.close("all")
    with pytest.raises(ValueError, match="kernel_diagnostics=True"):
        KernelDiagnosticsDisplay.from_estimator(clf.set_params(kernel_diagnostics=False)
                                                .fit(X, y))


def test_displays_draw_a_regressor_with_its_r2():
    from skntk import HybridNTKRegressor
    from skntk.plotting import KernelDiagnosticsDisplay

    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 3))
    y = np.column_stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]])
    reg = HybridNTKRegressor(hidden_layer_sizes=(16,), max_sgd_epochs=6, switch="param_norm",
                             switch_threshold=0.0, ntk_epochs=3, kernel_diagnostics=True,
                             random_state=0).fit(X, y)
    display = TrainingHistoryDisplay.from_estimator(reg)
    assert set(display.lines_) == {"train_loss", "val_loss", "train_r2", "val_r2"}
    np.testing.assert_allclose(display.lines_["val_r2"].get_ydata(), reg.history_["val_r2"])
    assert display.ax_.get_ylabel() == "loss (half mean squared error)"
    assert display.accuracy_ax_.get_ylabel() == "R² (coefficient of determination)"
    statistic = SwitchStatisticDisplay.from_estimator(reg)
    np.testing.assert_allclose(statistic.line_.get_ydata()[-1],
                               reg.history_["switch_statistic"][5])
    diagnostics = KernelDiagnosticsDisplay.from_estimator(reg)
    np.testing.assert_allclose(diagnostics.axes_[1].get_lines()[0].get_ydata(),
                               reg.history_["kernel_alignment"][:6])
    plt.close("all")
