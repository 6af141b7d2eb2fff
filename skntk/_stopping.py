"""When the NTK phase stops, and which of its states is kept.

With a whole number of epochs the phase runs exactly that many and keeps the last
state. With ``ntk_epochs="auto"`` it stops at the first of:

- ``"validation_score"``: with validation data, the validation score (accuracy) has
  not improved on its best value (the switch point included) for ``patience`` epochs
  (early stopping, Prechelt, "Early stopping - but when?", Neural Networks: Tricks of
  the Trade, 1998). The state kept is the **latest** whose score is within one
  standard error of the best and not below the switch state's. This runs the
  one-standard-error rule (Hastie, Tibshirani and Friedman, The Elements of
  Statistical Learning, 2nd ed., section 7.10) the other way than the book, which keeps
  the most parsimonious state (here the earliest): the later
  states are the more converged solutions of the phase's problem, and on a small
  validation set the best score is often one lucky sample ahead of them (on the
  interaction task of benchmarks/bench_hybrid.py, 200 validation samples, keeping the
  best state instead ended up to 1.7 points of test accuracy below the converged
  one). As in scikit-learn's
  ``MLPClassifier(early_stopping=True)`` the score, not the loss, is watched: the
  linearised network keeps sharpening its logits after its validation loss has
  reached its minimum, which raises that loss while the accuracy still improves;
  stopping at the loss minimum cost 0.5 to 1.5 points of test accuracy in
  benchmarks/bench_hybrid.py;
- ``"converged"``: an epoch lowered the training loss by less than ``tol`` times the
  training loss at the switch, and either the loss is at most half its value at the
  switch or the epoch before was slow too (early quasi-Newton iterations can be slow
  before the curvature pairs speed them up: on the interaction task of
  benchmarks/bench_hybrid.py the second L-BFGS epoch lowered the loss by 2.4% and the
  third by 32%); the last (converged) state is kept unless it is below the switch
  state, when the state is chosen as for ``"validation_score"``;
- ``"max_epochs"``: ``max_epochs`` epochs have run; the state is chosen as for
  ``"validation_score"``.

With either, ``"callback"``: one of the estimator's ``callbacks`` asked to stop after
an epoch; the state it saw (the last) is kept.

"Best" is the highest validation score (ties: the later state) or, without
validation data, the lowest training loss (with no tolerance). The switch point itself
is a candidate (epoch 0), and **no state whose score is below the switch state's is
ever kept**: the phase never hands back a model worse, by the criterion it watches,
than the one it started from. (Before this rule, the latest state within one standard
error of the best could be worse than the switch state: with the 33 validation rows of
``load_diabetes`` one standard error of R^2 is 0.15, and a phase whose validation R^2
fell from 0.375 at the switch to 0.24 kept 0.24.) A phase that keeps the switch state
counts as evidence against the switch (:mod:`skntk._switch_check`). Without
validation data only the training loss protects the result: the kept state's training
loss is never above the switch state's.
"""

import math

CONVERGENCE_EPOCHS = 2
"""Consecutive slow epochs that make the phase converged while the training loss is
above ``PROGRESS_FOR_ONE_SLOW_EPOCH`` times its value at the switch."""

PROGRESS_FOR_ONE_SLOW_EPOCH = 0.5
"""Once the training loss is at most this share of its value at the switch, one slow
epoch makes the phase converged."""


class NTKStopping:
    """Stopping rule of the NTK phase, fed one epoch at a time.

    Parameters
    ----------
    auto : bool
        ``ntk_epochs="auto"``; False: run all ``max_epochs`` and keep the last state.
    max_epochs : int or float
        Epoch budget (``inf`` for the closed-form kernel regression, whose one row is
        passed to :meth:`update` as epoch 1).
    tol : float
        Relative decrease of the training loss below which the phase has converged.
    patience : int
        Epochs without a better validation score before stopping.
    start_state : object
        The phase's state at the switch (epoch 0).
    start_train_loss : float
        Training loss at the switch.
    start_val_score : float
        Validation score (higher is better) at the switch; NaN without validation data.
    score_tolerance : callable ``score -> float``, optional
        Standard error of a validation score (``Loss.score_standard_error`` at the
        number of validation samples); ``None``: no tolerance.
    """

    def __init__(self, auto, max_epochs, tol, patience, start_state, start_train_loss,
                 start_val_score, score_tolerance=None):
        self.auto = auto
        self.max_epochs = max_epochs
        self.tol = tol
        self.patience = patience
        self.start_train_loss = start_train_loss
        self.use_validation = not math.isnan(start_val_score)
        self.last_train_loss = start_train_loss
        self.best_epoch = 0
        self.last_epoch = 0
        self.slow_epochs = 0
        # Scores are compared as "lower is better".
        self.best_score = -start_val_score if self.use_validation else start_train_loss
        self.score_tolerance = (score_tolerance if self.use_validation and score_tolerance
                                else None)
        # The switch state's score: no state below it is ever kept.
        self.start_score = self.best_score
        self.last_score = self.best_score
        # The latest state within the tolerance of the best and not below the switch
        # state, and its epoch.
        self.chosen_state, self.chosen_epoch = start_state, 0
        self.reason = None

    def update(self, epoch, state, train_loss, val_score):
        """Record the state after ``epoch``; True when the phase stops here."""
        self.last_epoch = epoch
        score = -val_score if self.use_validation else train_loss
        if score <= self.best_score:  # ties: the later, more converged state
            self.best_epoch, self.best_score = epoch, score
        tolerance = (0.0 if self.score_tolerance is None
                     else self.score_tolerance(-self.best_score))
        self.last_score = score
        if score <= self.best_score + tolerance and score <= self.start_score:
            self.chosen_state, self.chosen_epoch = state, epoch
        decrease = self.last_train_loss - train_loss
        self.last_train_loss = train_loss
        slow = 0 <= decrease < self.tol * self.start_train_loss
        self.slow_epochs = self.slow_epochs + 1 if slow else 0
        # Early quasi-Newton epochs can be slow before the curvature pairs speed them
        # up; once the loss has halved, one slow epoch means convergence.
        needed = 1 if train_loss <= PROGRESS_FOR_ONE_SLOW_EPOCH * self.start_train_loss \
            else CONVERGENCE_EPOCHS
        if not self.auto:
            done = epoch >= self.max_epochs or math.isinf(self.max_epochs)
            self.reason = "n_epochs" if done else None
        elif self.use_validation and epoch - self.best_epoch >= self.patience:
            self.reason = "validation_score"
        elif self.slow_epochs >= needed:
            self.reason = "converged"
        elif epoch >= self.max_epochs:
            self.reason = "max_epochs"
        return self.reason is not None

    def interrupt(self):
        """Stop after the last updated epoch, keeping its state (a callback asked)."""
        self.reason = "callback"

    @property
    def kept_epoch(self):
        """The epoch (0: the switch point) whose state the phase ends with."""
        if not self.auto or self.reason == "callback":
            return self.last_epoch
        if self.reason == "converged" and self.last_score <= self.start_score:
            return self.last_epoch
        return self.chosen_epoch

    def kept(self, last_state):
        """The state the phase ends with (see :attr:`kept_epoch`)."""
        return self.chosen_state if self.kept_epoch == self.chosen_epoch else last_state
