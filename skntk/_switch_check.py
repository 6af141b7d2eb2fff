"""Whether a switch is taken, and whether the NTK phase confirmed it.

The switch criteria (:mod:`skntk._switch`) look at SGD's recent past only. This
module adds what they cannot see:

- **A dead network never switches** (by an automatic criterion; the user's
  ``switch="fixed_epoch"`` is taken as asked, with the warning). A network whose
  training score is at the level
  of a constant prediction (the majority class's share for a classifier, R^2 <= 0
  for a regressor), or whose training loss rose above its initial value in the first
  epoch, has not settled: it has stopped learning, usually because ``X`` is not
  standardised. The switch is not taken and a warning names the cause and the fix.
- **A statistic at its noise floor is a decision point.** When the statistic has not
  set a new low (by ``STALL_DROP``) for ``STALL_WINDOWS`` windows while above the
  threshold, a trial switch is made (trigger ``"stalled"``); the NTK phase then
  confirms it or not, like any other switch.
- **The NTK phase's result confirms or undoes the switch.** Where the kernel regime
  has taken over, the linearised model nearly interpolates: on the four main tasks of
  benchmarks/bench_hybrid.py the NTK phase cut the training loss by 94 to 96 % of its
  value at the switch; after a switch on SGD's plateau (the sin task) by 2 to 3 %.
  After a switch on the plateau of the sin task that the phase did not stop at once,
  it cut the training loss by 74 % while raising the validation accuracy by one
  standard error (0.724 to 0.756 on 225 rows), and ended 12 points of test accuracy
  below SGD alone: a partial cut and a gain within noise are not enough. A switch is
  confirmed when the phase kept one of its own states (it is never worse than the
  switch state on validation, :mod:`skntk._stopping`) and either cut the training
  loss by an order of magnitude (``CONFIRMING_LOSS_CUT``) or raised the validation
  score by more than ``CONFIRMING_STANDARD_ERRORS`` standard errors (a one-sided test
  at about 2.5 %). Otherwise SGD resumes from the switch point
  ``theta*`` (its trajectory is then that of SGD alone), and the criterion is re-armed:
  no switch before ``REARM_FACTOR`` times the epoch of the rejected one, none at
  the last epoch of the budget, where a rejection could not be acted on, and none
  after ``MAX_REJECTED_SWITCHES`` rejections: SGD then spends the rest of the budget
  without computing the statistic.
"""

import math
from typing import NamedTuple

from sklearn.exceptions import ConvergenceWarning

from ._validation import warn_user

STALL_WINDOWS = 4
"""Windows (``switch_window`` epochs each) without a new low of the statistic that
make it stalled."""

STALL_DROP = 0.1
"""A new low must be this share below the previous one (SGD's noise moves the
statistic by a few per cent from check to check)."""

CONFIRMING_LOSS_CUT = 0.9
"""Share of the training loss at the switch that the NTK phase must remove to confirm
the switch (without a validation gain beyond ``CONFIRMING_STANDARD_ERRORS``)."""

CONFIRMING_STANDARD_ERRORS = 2.0
"""A validation gain over the switch state larger than this many standard errors of
the switch state's score confirms the switch."""

REARM_FACTOR = 2
"""After a rejected switch at SGD epoch ``e`` the next one waits until epoch
``REARM_FACTOR * e``."""

MAX_REJECTED_SWITCHES = 2
"""After this many rejected switches no switch is tried again: SGD spends the rest of
the budget without computing the statistic. In benchmarks/bench_hybrid.py no third
switch was ever confirmed (the plateau task's second one is), while each rejected
NTK phase costs five to ten epochs of the phase (noisy moons: three rejected phases,
1.75 times plain SGD's CPU time)."""

EXPLODED_LOSS_FACTOR = 1.0
"""A first epoch that ends with a training loss above this multiple of the initial
one has diverged without overflowing."""

CONSTANT_SCORE_MARGIN = 0.005
"""A training score at most this far above the constant predictor's is at its level."""

INPUT_SCALE_WARNING = 100.0
"""A feature whose root mean square exceeds this gets the warning before training:
with a standard initialisation the first layer's pre-activations are then hundreds of
times larger than the network's scale (raw ``load_wine``: 810; raw
``load_breast_cancer``: 1048)."""


def constant_score(score_name, Y):
    """The training score of the best constant prediction: the largest class share
    of the one-hot ``Y`` for accuracy, 0 for R^2."""
    if score_name == "accuracy":
        return float(Y.mean(axis=0).max())
    return 0.0


def input_scale_warning(X):
    """Warn before training when a feature of ``X`` (float array) is far from
    standardised (root mean square above ``INPUT_SCALE_WARNING``)."""
    if X.shape[0] == 0:
        return
    rms = (X.astype(float) ** 2).mean(axis=0) ** 0.5
    feature = int(rms.argmax())
    if rms[feature] > INPUT_SCALE_WARNING:
        warn_user(
            f"Feature {feature} of `X` has a root mean square of {rms[feature]:.3g}: the "
            f"network expects standardised inputs and may stop learning (fall to a "
            f"constant prediction) on inputs of this scale. Standardise `X`, e.g. with "
            f"sklearn.pipeline.make_pipeline(sklearn.preprocessing.StandardScaler(), "
            f"estimator).", UserWarning)


class SwitchGuard:
    """Decides, after each SGD epoch, whether the switch is taken.

    Parameters
    ----------
    window : int
        ``switch_window``.
    stall : bool
        Whether a stalled statistic triggers a trial switch (the automatic criteria,
        not a scouting run).
    constant : float
        The training score of a constant prediction (:func:`constant_score`).
    initial_loss : float
        The training loss of the initial network.
    score_name : str
        ``"accuracy"`` or ``"r2"``, for the warning.
    last_epoch : int or float, default=inf
        ``max_sgd_epochs``: after a rejected switch no switch is taken at this epoch,
        since a rejection there would leave no budget to resume SGD.
    block_dead : bool, default=True
        Whether a dead network's switch is refused; False (``switch="fixed_epoch"``,
        the user's own epoch) takes it as asked, with the warning.
    """

    def __init__(self, window, stall, constant, initial_loss, score_name,
                 last_epoch=math.inf, block_dead=True):
        self.last_epoch = last_epoch
        self.block_dead = block_dead
        self.window = window
        self.stall = stall
        self.constant = constant
        self.initial_loss = initial_loss
        self.score_name = score_name
        self.not_before = 0
        self.rejected = 0
        self.exploded = False
        self.warned = False
        self.low, self.low_epoch = math.inf, 0

    def rearm(self, epoch):
        """After a rejected switch at SGD epoch ``epoch``: no switch before
        ``REARM_FACTOR * epoch``, none at all after ``MAX_REJECTED_SWITCHES``, and the
        stall count starts again."""
        self.rejected += 1
        self.not_before = REARM_FACTOR * epoch
        self.low, self.low_epoch = math.inf, epoch

    @property
    def closed(self):
        """Whether no switch can be taken any more in the budget (the statistic need
        not be computed)."""
        return self.rejected > 0 and (self.rejected >= MAX_REJECTED_SWITCHES
                                      or self.not_before >= self.last_epoch)

    def dead(self, epoch, train_loss, train_score):
        """Whether the network after ``epoch`` is at the constant predictor's level."""
        if epoch == 1 and train_loss > EXPLODED_LOSS_FACTOR * self.initial_loss:
            self.exploded = True
        return self.exploded or train_score <= self.constant + CONSTANT_SCORE_MARGIN

    def update(self, epoch, statistic, held, train_loss, train_score):
        """The trigger of a switch after SGD epoch ``epoch``: ``"criterion"`` (the
        criterion held), ``"stalled"``, or ``None`` (no switch)."""
        if self.closed:
            return None
        trigger = "criterion" if held else None
        if self.stall and math.isfinite(statistic):
            if statistic < (1 - STALL_DROP) * self.low:
                self.low, self.low_epoch = statistic, epoch
            elif trigger is None and epoch - self.low_epoch >= STALL_WINDOWS * self.window:
                trigger = "stalled"
        if trigger is None or epoch < self.not_before:
            return None
        if self.not_before and epoch >= self.last_epoch:
            return None  # a second look with no budget left to act on it
        if self.dead(epoch, train_loss, train_score):
            if not self.warned:
                self.warned = True
                cause = ("its training loss rose above the initial one in the first epoch"
                         if self.exploded else
                         f"its training {self.score_name} ({train_score:.4g}) is at or "
                         f"below the level of a constant prediction ({self.constant:.4g})")
                taken = ("was taken as asked (switch='fixed_epoch')" if not self.block_dead
                         else "was not taken")
                warn_user(
                    f"The switch {taken} at epoch {epoch}: {cause}, so the network "
                    f"has not learned yet or has stopped learning; it has not settled. "
                    f"If it stays there, the likely cause is inputs that are not "
                    f"standardised: standardise `X` (e.g. with "
                    f"sklearn.preprocessing.StandardScaler) or lower `learning_rate`.",
                    ConvergenceWarning)
            if self.block_dead:
                return None
        return trigger


class Verdict(NamedTuple):
    """What the NTK phase's result says about the switch: ``confirmed``, the share of
    the switch's training loss it removed (``loss_cut``) and its validation gain over
    the switch state (NaN without validation data)."""

    confirmed: bool
    loss_cut: float
    val_gain: float


def judge_switch(kept_epoch, switch_loss, kept_loss, switch_val_score, kept_val_score,
                 score_standard_error=None):
    """The verdict on a switch from the NTK phase's kept state (module docstring).

    ``kept_epoch``: the NTK epoch kept (0: the switch state); losses and validation
    scores at the switch and of the kept state (NaN scores without validation data);
    ``score_standard_error``: callable ``score -> standard error`` or ``None``.
    """
    loss_cut = 1.0 - kept_loss / switch_loss if switch_loss > 0 else 0.0
    val_gain = kept_val_score - switch_val_score
    gained = (score_standard_error is not None and math.isfinite(val_gain)
              and val_gain > CONFIRMING_STANDARD_ERRORS * score_standard_error(switch_val_score))
    confirmed = kept_epoch > 0 and (loss_cut >= CONFIRMING_LOSS_CUT or gained)
    return Verdict(bool(confirmed), float(loss_cut), float(val_gain))
