"""The checked switch: dead networks, stalled statistics, the verdict of the NTK phase,
the state it keeps, and the attempt records of a fit."""

import math
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.exceptions import ConvergenceWarning

import skntk._switch_check as switch_check
import skntk._training as training_module
from skntk import HybridNTKClassifier
from skntk._losses import accuracy_standard_error
from skntk._stopping import NTKStopping
from skntk._switch_check import SwitchGuard, input_scale_warning, judge_switch


def _guard(window=3, stall=True, constant=0.5):
    return SwitchGuard(window, stall, constant, initial_loss=1.0, score_name="accuracy")


def _triggers(guard, statistics, held=None, score=0.9, first_epoch=1):
    held = held or [False] * len(statistics)
    return [guard.update(epoch, s, h, 0.5, score)
            for epoch, (s, h) in enumerate(zip(statistics, held), start=first_epoch)]


def test_a_rejected_switch_re_arms_the_criterion_until_twice_its_epoch():
    guard = _guard()
    # The criterion holds from epoch 5 on, every epoch (a settled statistic).
    assert _triggers(guard, [math.nan] * 4 + [0.1], [False] * 4 + [True]) == \
        [None] * 4 + ["criterion"]
    guard.rearm(5)
    # Still holding at epochs 6 to 12: no switch before epoch 10, then at once.
    got = _triggers(guard, [0.1] * 7, [True] * 7, first_epoch=6)
    assert got == [None] * 4 + ["criterion"] * 3
    assert guard.not_before == switch_check.REARM_FACTOR * 5 == 10
    # No second look at the last epoch of the budget: nothing could follow a rejection.
    guard = SwitchGuard(3, True, 0.5, 1.0, "accuracy", last_epoch=12)
    guard.rearm(5)
    got = _triggers(guard, [0.1] * 7, [True] * 7, first_epoch=6)
    assert got == [None] * 4 + ["criterion"] * 2 + [None]


def test_a_statistic_that_stops_falling_above_its_threshold_triggers_a_trial_switch():
    window = 3
    guard = _guard(window)
    # Checks every third epoch: falls to 0.2 at epoch 9, then hovers within 10 %.
    checks = {3: 1.0, 6: 0.5, 9: 0.2, 12: 0.21, 15: 0.19, 18: 0.22, 21: 0.2, 24: 0.2}
    statistics = [checks.get(e, math.nan) for e in range(1, 25)]
    got = _triggers(guard, statistics)
    fired = [e for e, t in enumerate(got, start=1) if t]
    # Four windows (12 epochs) after the last new low at epoch 9.
    assert fired == [21, 24] and got[20] == "stalled"
    # A fresh low restarts the count; infinite statistics never stall.
    guard = _guard(window)
    assert not any(_triggers(guard, [math.inf] * 30))
    # Without the stall rule (a scouting run, a fixed switch) it never fires.
    assert not any(_triggers(_guard(window, stall=False), statistics))


def test_a_network_at_the_constant_predictor_level_never_switches():
    guard = _guard(constant=0.6)
    with pytest.warns(ConvergenceWarning, match="StandardScaler"):
        assert guard.update(4, 0.01, True, 0.69, 0.6) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        assert guard.update(5, 0.01, True, 0.69, 0.603) is None
    # Once it learns, the switch is taken.
    assert guard.update(6, 0.01, True, 0.5, 0.7) == "criterion"
    # A first epoch that raised the loss: dead for the whole fit.
    guard = _guard(constant=0.6)
    with pytest.warns(ConvergenceWarning, match="rose above the initial one"):
        assert guard.update(1, 0.01, True, 2.0, 0.9) is None
    assert guard.update(2, 0.01, True, 0.3, 0.9) is None


def test_the_verdict_on_a_switch():
    se = lambda score: accuracy_standard_error(score, 200)  # noqa: E731
    # The kernel regime took over: the phase nearly interpolates.
    assert judge_switch(6, 0.40, 0.02, 0.90, 0.90, se).confirmed
    # The sin task's plateau: 2-3 % cut, or 74 % cut with a gain of one standard error.
    assert not judge_switch(2, 0.38, 0.37, 0.72, 0.72, se).confirmed
    assert not judge_switch(9, 0.38, 0.10, 0.72, 0.72 + se(0.72), se).confirmed
    # A gain beyond two standard errors confirms it without the cut.
    verdict = judge_switch(9, 0.38, 0.30, 0.72, 0.72 + 2.1 * se(0.72), se)
    assert verdict.confirmed and verdict.loss_cut == pytest.approx(1 - 0.30 / 0.38)
    # The switch state kept (validation only fell): evidence against the switch.
    assert not judge_switch(0, 0.40, 0.40, 0.90, 0.90, se).confirmed
    # Without validation data only the cut decides.
    assert judge_switch(3, 1.0, 0.05, math.nan, math.nan).confirmed
    assert not judge_switch(3, 1.0, 0.5, math.nan, math.nan).confirmed


def _stop(val_scores, train_losses=None, n=33):
    """Feed ``NTKStopping`` a constructed phase; returns it (states are the epochs)."""
    train_losses = train_losses or [1.0 - 0.1 * e for e in range(1, len(val_scores))]
    stopping = NTKStopping(True, 100, 1e-12, 3, 0, 1.0, val_scores[0],
                           lambda score: 0.15)
    for epoch, (score, loss) in enumerate(zip(val_scores[1:], train_losses), start=1):
        if stopping.update(epoch, epoch, loss, score):
            break
    return stopping


def test_a_validation_curve_falling_from_the_switch_keeps_the_switch_state():
    # load_diabetes: R^2 0.375 at the switch, then 0.366, 0.309, 0.241 (one standard
    # error 0.15): the latest state within one standard error would be 0.241.
    stopping = _stop([0.375, 0.366, 0.309, 0.241, 0.2])
    assert stopping.reason == "validation_score"
    assert stopping.kept_epoch == 0 and stopping.kept("last") == 0


def test_a_noisy_rising_validation_curve_keeps_the_latest_state_within_one_se():
    # Best 0.5 at epoch 2; epochs 3 and 4 are within one standard error (0.15) of it
    # and above the switch state's 0.3; epoch 5 is within it but below the switch.
    stopping = _stop([0.3, 0.45, 0.5, 0.4, 0.36, 0.29])
    assert stopping.reason == "validation_score"
    assert stopping.best_epoch == 2 and stopping.kept_epoch == 4


def test_a_converged_phase_below_the_switch_state_keeps_the_chosen_state():
    stopping = NTKStopping(True, 100, 0.5, 10, "switch", 1.0, 0.8, lambda s: 0.01)
    assert not stopping.update(1, "one", 0.9, 0.81)
    assert stopping.update(2, "two", 0.89, 0.7)  # slow twice: converged
    assert stopping.reason == "converged" and stopping.kept("two") == "one"


def test_input_scale_warning_names_the_fix():
    rng = np.random.RandomState(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        input_scale_warning(rng.normal(size=(50, 3)) * 10)
    with pytest.warns(UserWarning, match="Feature 1 .*StandardScaler"):
        input_scale_warning(np.column_stack([rng.normal(size=50), 800 + rng.normal(size=50)]))


@pytest.mark.parametrize("load", [load_wine, load_breast_cancer])
def test_raw_tables_get_the_warning_before_training(load):
    X, _ = load(return_X_y=True)
    with pytest.warns(UserWarning, match="StandardScaler"):
        input_scale_warning(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        input_scale_warning((X - X.mean(axis=0)) / X.std(axis=0))


def test_input_scale_warning_points_at_the_callers_fit_line():
    X, y = load_wine(return_X_y=True)
    clf = HybridNTKClassifier(hidden_layer_sizes=(4,), max_sgd_epochs=1, switch=None,
                              ntk_phase=None, validation_fraction=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    scale = [w for w in caught if "root mean square" in str(w.message)]
    assert len(scale) == 1 and scale[0].filename == __file__


def _data(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


@pytest.mark.parametrize("budget, sgd_epochs, closed", [(10, [2, 4, 10], 4), (7, [2, 4, 7], 4),
                                                        (4, [2, 4], 2), (2, [2, 2], 2)])
def test_rejected_switches_resume_sgd_as_if_there_had_been_none(monkeypatch, budget,
                                                                 sgd_epochs, closed):
    # Every switch rejected: the fit must end exactly where SGD alone ends.
    monkeypatch.setattr(switch_check, "CONFIRMING_LOSS_CUT", 2.0)
    monkeypatch.setattr(switch_check, "CONFIRMING_STANDARD_ERRORS", math.inf)
    monkeypatch.setattr(training_module, "CONFIRMING_STANDARD_ERRORS", math.inf)
    monkeypatch.setattr(training_module, "_sgd_not_gaining", lambda *args: False)
    X, y = _data()
    kw = dict(hidden_layer_sizes=(16,), max_sgd_epochs=budget, switch_window=2, batch_size=32,
              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = HybridNTKClassifier(switch="param_norm", switch_threshold=1e9, **kw).fit(X, y)
        sgd = HybridNTKClassifier(switch=None, ntk_phase=None, **kw).fit(X, y)
    attempts = clf.switch_attempts_
    # Switches at SGD epochs 2 and 4 (re-armed to twice the last; none at the last
    # epoch after a rejection; none after two rejections), then the budget: SGD's last
    # state (at the rejected switch when a first switch comes at the last epoch).
    assert [a["sgd_epochs"] for a in attempts] == sgd_epochs
    assert [a["confirmed"] for a in attempts] == [False] * (len(sgd_epochs) - 1) + [None]
    assert [a["kept"] for a in attempts] == [False] * (len(sgd_epochs) - 1) + [True]
    assert attempts[-1]["trigger"] == "budget" and attempts[-1]["ntk_epochs"] == 0
    # The records match history_ row by row.
    phase, history = clf.history_["phase"], clf.history_
    np.testing.assert_array_equal(clf.switch_epochs_, [a["switch_epoch"] for a in attempts])
    for a in attempts:
        row = a["switch_epoch"]
        assert phase[row - 1] == "sgd" and np.sum(phase[:row] == "sgd") == a["sgd_epochs"]
        assert a["train_loss_switch"] == pytest.approx(history["train_loss"][row - 1])
        assert list(phase[row:row + a["ntk_epochs"]]) == ["ntk"] * a["ntk_epochs"]
        if a["ntk_best_epoch"]:
            assert a["train_loss_kept"] == pytest.approx(
                history["train_loss"][row + a["ntk_best_epoch"] - 1])
    assert clf.n_iter_ == len(phase) == budget + sum(a["ntk_epochs"] for a in attempts)
    assert clf.switch_epoch_ == attempts[-1]["switch_epoch"]
    assert np.sum(phase[:clf.switch_epoch_] == "sgd") == budget and clf.ntk_best_epoch_ == 0
    # Once no switch can follow (after two rejections, or a re-arm past the budget),
    # the statistic is no longer computed.
    statistic = history["switch_statistic"][phase == "sgd"]
    assert np.all(np.isfinite(statistic[1:closed])) and np.all(np.isnan(statistic[closed:]))
    # SGD resumed from theta* each time: the same network and predictions as SGD alone.
    for got, want in zip(clf.coefs_, sgd.coefs_):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X), sgd.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(history["train_loss"][phase == "sgd"], sgd.history_["train_loss"],
                               rtol=1e-5)


def test_a_constant_predictor_network_never_switches():
    X, y = _data()
    y[:30] = 1  # unbalanced: the majority class's share is the constant level
    layers = (X.shape[1], 8, 2)
    coefs = [np.zeros((a, b), np.float32) for a, b in zip(layers[:-1], layers[1:])]
    intercepts = [np.zeros(b, np.float32) for b in layers[1:]]
    # A criterion that would hold from epoch 2 on.
    clf = HybridNTKClassifier(hidden_layer_sizes=(8,), max_sgd_epochs=6, switch="param_norm",
                              switch_window=2, switch_threshold=1e9,
                              validation_fraction=None, random_state=0)
    with pytest.warns(ConvergenceWarning, match="not taken.*constant prediction.*StandardScaler"):
        clf.fit(X, y, coef_init=coefs, intercept_init=intercepts)
    assert clf.history_["train_accuracy"][:6] == pytest.approx(max(np.mean(y), 1 - np.mean(y)))
    assert [a["trigger"] for a in clf.switch_attempts_] == ["budget"]
    assert clf.switch_epoch_ == 6 and not clf.switch_reached_
    # The user's fixed epoch is taken as asked, with the warning.
    clf.set_params(switch="fixed_epoch", switch_epoch=2)
    with pytest.warns(ConvergenceWarning, match="taken as asked.*StandardScaler"):
        clf.fit(X, y, coef_init=coefs, intercept_init=intercepts)
    assert clf.switch_epoch_ == 2 and clf.switch_reached_


def _attempt(val_score_switch, val_score_kept, val_loss_switch=1.0, val_loss_kept=1.0):
    record = {"val_score_switch": val_score_switch, "sgd_gain": math.nan,
              "val_loss_switch": val_loss_switch, "val_loss_kept": val_loss_kept}
    return training_module._Attempt(None, None, None, None, 1, 0.1, val_score_kept, record)


class _Rows:
    n = 200


def test_resumed_sgd_clearly_behind_the_last_result_ends_the_fit():
    not_gaining = training_module._sgd_not_gaining
    se = accuracy_standard_error
    one = se(0.885, 200)  # 0.0226
    # The plateau: the first switch's result 0.756, SGD reached 0.809 by the next one.
    attempts = [_attempt(0.724, 0.756), _attempt(0.809, 0.90)]
    assert not not_gaining(attempts, _Rows, se)
    assert attempts[-1].record["sgd_gain"] == pytest.approx(0.809 - 0.756)
    # Behind by more than one standard error with a loss no lower: the fit ends.
    behind = 0.885 - 1.1 * one
    assert not_gaining([_attempt(0.885, 0.885, 0.33, 0.33), _attempt(behind, 0.9, 0.33, 0.3)],
                       _Rows, se)
    # Within one standard error, or with a lower validation loss, SGD goes on.
    within = 0.885 - 0.9 * one
    assert not not_gaining([_attempt(0.885, 0.885, 0.33, 0.33), _attempt(within, 0.9, 0.4, 0.3)],
                           _Rows, se)
    assert not not_gaining([_attempt(0.885, 0.885, 0.33, 0.33), _attempt(behind, 0.9, 0.32, 0.3)],
                           _Rows, se)
    # The best earlier result counts.
    assert not_gaining([_attempt(0.7, 0.95), _attempt(0.8, 0.8), _attempt(0.85, 0.86)],
                       _Rows, se)
    # Without validation data SGD always goes on.
    assert not not_gaining([_attempt(0.885, 0.885), _attempt(0.5, 0.888)], None, se)
    assert not not_gaining([_attempt(0.87, 0.873)], _Rows, se)


def test_an_earlier_attempt_is_kept_only_beyond_two_standard_errors():
    se = accuracy_standard_error
    kept = training_module._kept_attempt
    margin = 2 * se(0.80, 200)
    assert kept([_attempt(0.7, 0.80 + 0.9 * margin), _attempt(0.8, 0.80)], _Rows, se) == 1
    assert kept([_attempt(0.7, 0.80 + 1.1 * margin), _attempt(0.8, 0.80)], _Rows, se) == 0
    assert kept([_attempt(0.7, 0.99), _attempt(0.8, 0.80)], None, se) == 1
    # A lower validation loss at a score within the margin does not count.
    assert kept([_attempt(0.7, 0.80, 1.0, 0.1), _attempt(0.8, 0.80, 1.0, 0.5)], _Rows, se) == 1


def test_the_history_display_shades_every_ntk_run_and_marks_rejected_switches():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from skntk.plotting import TrainingHistoryDisplay

    phases = np.array(["sgd"] * 3 + ["ntk"] * 2 + ["sgd"] * 3 + ["ntk"] * 2)
    n = len(phases)
    history = {"epoch": np.arange(1, n + 1), "phase": phases,
               "train_loss": np.linspace(1, 0.1, n), "val_loss": np.linspace(1, 0.2, n),
               "train_accuracy": np.linspace(0.5, 1, n), "val_accuracy": np.linspace(0.5, 0.9, n)}
    display = TrainingHistoryDisplay(history, switch_epoch=8, kept_epoch=10,
                                     rejected_epochs=[3]).plot()
    # Two NTK runs on each of the two panels, each from its switch (epochs 3 and 8).
    spans = [span.get_extents().transformed(span.axes.transData.inverted())
             for span in display.ntk_spans_]
    assert len(spans) == 4
    assert sorted({(round(box.x0, 6), round(box.x1, 6)) for box in spans}) == \
        [(3.0, 5.0), (8.0, 10.0)]
    assert [line.get_xdata()[0] for line in display.rejected_lines_] == [3, 3]
    matplotlib.pyplot.close("all")
