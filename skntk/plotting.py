"""Plots of a fitted :class:`~skntk.HybridNTKClassifier` or
:class:`~skntk.HybridNTKRegressor`, as scikit-learn Display objects.

Each display is built with ``from_estimator(clf)``, which draws at once, or from plain
arrays with its constructor followed by :meth:`plot`. After drawing, ``figure_`` and
``ax_`` hold the matplotlib figure and axes.

- :class:`TrainingHistoryDisplay`: loss and score (accuracy or R^2) per epoch, on the
  validation data, with the switch epoch marked, the NTK phase shaded and, when that
  phase stopped early, the epoch whose state the model kept marked; switches that the
  NTK phase did not confirm (SGD resumed after them) are marked too.
- :class:`SwitchStatisticDisplay`: the monitored switch statistic per epoch on a log
  scale, with the threshold and the switch epoch marked.
- :class:`KernelDiagnosticsDisplay`: the monitor kernel per SGD epoch
  (``kernel_diagnostics=True``): distance from initialisation and velocity, centred
  alignment, effective rank and largest eigenvalues.

Epoch axes show whole epochs only; a run of one or two epochs is shown with one
epoch of room either side.

matplotlib is optional (``pip install matplotlib``, or the ``plot`` extra:
``pip install ".[plot]"`` in a checkout of skntk); it is imported only when a
display draws.
"""

import math

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["KernelDiagnosticsDisplay", "SwitchStatisticDisplay", "TrainingHistoryDisplay"]

_TRAIN_COLOR, _VAL_COLOR, _SWITCH_COLOR, _NTK_COLOR = "C0", "C1", "C3", "C2"

# NTK-phase stops that end it early (``ntk_epochs="auto"``), and keep the state of
# ``ntk_best_epoch_`` ("max_epochs" runs the whole cap; "n_epochs" a whole number).
_EARLY_NTK_STOPS = ("validation_score", "converged")

# What each criterion's statistic is, for the y-axis label (see HybridNTKClassifier's
# ``switch`` parameter); k is ``switch_window``.
_STATISTIC_LABELS = {
    "linearization_error": r"linearisation error $\varepsilon(e-k, e) / \varepsilon(0, e)$",
    "kernel_velocity": r"kernel velocity $v_e / d_e$",
    "kernel_distance": r"kernel distance $1 - \cos(K_e, K_{e-k})$",
    "ntk_norm": r"NTK distance change $|D_e - D_{e-k}|$",
    "param_norm": r"parameter change $\|\theta_e - \theta_{e-k}\|_2$",
}


# The score columns of ``history_`` and their labels: (loss label, curve name, axis
# label), keyed by the suffix of the score columns (``train_<key>``, ``val_<key>``).
_SCORES = {
    "accuracy": ("loss (mean cross-entropy)", "accuracy", "accuracy (fraction)"),
    "r2": ("loss (half mean squared error)", "R²", "R² (coefficient of determination)"),
}


def _score_key(history):
    """The score of ``history``: ``"accuracy"`` (classifier) or ``"r2"`` (regressor)."""
    for key in _SCORES:
        if f"train_{key}" in history:
            return key
    raise ValueError(f"`history` holds no score columns: expected one of "
                     f"{[f'train_{key}' for key in _SCORES]}, got {sorted(history)}.")


def _require_matplotlib():
    """Import matplotlib, or raise an ImportError that says how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "skntk.plotting needs matplotlib. Install it with pip install matplotlib "
            '(or the plot extra: pip install ".[plot]" in a checkout of skntk).') from exc


def _new_axes(ncols):
    """A new figure with ``ncols`` axes side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(5.0 * ncols, 3.8), layout="constrained")
    return [axes] if ncols == 1 else list(axes)


def _fitted_hybrid(estimator):
    """The fitted skntk estimator inside ``estimator`` (itself, a Pipeline, a search).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    TypeError
        If it holds no training history (not a skntk estimator).
    """
    check_is_fitted(estimator)
    estimator = getattr(estimator, "best_estimator_", estimator)
    if hasattr(estimator, "steps"):
        estimator = estimator[-1]
    if not hasattr(estimator, "history_"):
        raise TypeError(
            f"Expected a fitted HybridNTKClassifier or HybridNTKRegressor (or a Pipeline or "
            f"search ending in one); "
            f"got {type(estimator).__name__}, which has no `history_`.")
    return estimator


def _marked_switch_epoch(estimator):
    """Epoch to mark as the switch: ``switch_epoch_`` when the SGD phase ended there
    because the criterion held or an NTK phase followed; None for plain SGD."""
    followed = np.any(estimator.history_["phase"] == "ntk")
    return int(estimator.switch_epoch_) if followed or estimator.switch_reached_ else None


def _mark_switch(ax, switch_epoch, label):
    return ax.axvline(switch_epoch, color=_SWITCH_COLOR, linestyle=":", linewidth=1.5,
                      label=label)


def _integer_epochs(ax, epochs):
    """Whole-epoch ticks and the label "epoch" on the x-axis of ``ax``.

    ``epochs`` are the x positions drawn (NaN ignored). When they span less than two
    epochs (one point, or two neighbours), the limits are widened to one epoch either
    side: on a narrower range even an integer locator falls back to fractional ticks
    (2.84 ... 3.16 around a single point). Call after drawing, as it fixes the limits.
    """
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    epochs = np.asarray(epochs, dtype=float).ravel()
    epochs = epochs[np.isfinite(epochs)]
    if epochs.size and np.ptp(epochs) < 2:
        low, high = ax.get_xlim()
        ax.set_xlim(min(low, epochs.min() - 1), max(high, epochs.max() + 1))


def _ntk_runs(epochs, phases):
    """``(first, last)`` epoch of every run of consecutive NTK epochs."""
    runs = []
    for epoch, phase in zip(np.asarray(epochs), np.asarray(phases)):
        if phase != "ntk":
            continue
        if runs and runs[-1][1] == epoch - 1:
            runs[-1][1] = epoch
        else:
            runs.append([epoch, epoch])
    return [tuple(run) for run in runs]


def _rejected_switch_epochs(estimator):
    """Epochs of the switches that the NTK phase did not confirm, after which SGD
    resumed."""
    return [int(attempt["switch_epoch"]) for attempt in getattr(estimator, "switch_attempts_", ())
            if attempt["confirmed"] is False and not attempt["kept"]]


def _kept_ntk_epoch(estimator):
    """Overall epoch whose state the model kept when its NTK phase stopped early
    (``switch_epoch_ + ntk_best_epoch_``); None when the phase ran to its end or kept
    the switch point."""
    best = getattr(estimator, "ntk_best_epoch_", 0)
    if best > 0 and getattr(estimator, "ntk_stop_reason_", None) in _EARLY_NTK_STOPS:
        return int(estimator.switch_epoch_) + int(best)
    return None


def _statistic_label(criterion, window):
    """y-axis label: what the statistic of ``criterion`` is, and its window k."""
    if criterion in _STATISTIC_LABELS:
        label = _STATISTIC_LABELS[criterion]
    else:
        label = "switch statistic" + (f" ({criterion})" if criterion else "")
    if window is not None:
        label += f"\n(k = {window} epoch{'' if window == 1 else 's'})"
    return label


class TrainingHistoryDisplay:
    """Loss and score per epoch of both training phases.

    Draws the training and validation curves of the loss and of the score: the mean
    cross-entropy and the accuracy (a fraction in [0, 1]) of a classifier, half the
    mean squared error and R^2 of a regressor. Marks the switch epoch with a vertical dotted line,
    shades the NTK phase and, when that phase stopped early, marks the epoch whose
    state the model kept with a green dotted line. Build it with
    :meth:`from_estimator`, or from arrays and then :meth:`plot`.

    Parameters
    ----------
    history : dict of ndarray
        As ``HybridNTKClassifier.history_`` or ``HybridNTKRegressor.history_``:
        equal-length arrays ``epoch`` (int), ``phase`` (``"sgd"`` or ``"ntk"``),
        ``train_loss``, ``val_loss``, and the scores ``train_accuracy``,
        ``val_accuracy`` (fractions in [0, 1]) or ``train_r2``, ``val_r2``; NaN
        validation values are not drawn.
    switch_epoch : int or None, default=None
        Last SGD epoch, marked by a vertical line; None marks nothing.
    kept_epoch : int or None, default=None
        Epoch (in ``history["epoch"]`` numbering) whose state the final model is, when
        the NTK phase stopped early and kept an earlier or converged state: for a fitted
        estimator ``switch_epoch_ + ntk_best_epoch_``. Marked by a vertical dotted line
        labelled "kept NTK-phase epoch"; None marks nothing.
    rejected_epochs : sequence of int or None, default=None
        Epochs of switches that the NTK phase did not confirm, after which SGD resumed
        (for a fitted estimator, the ``"switch_epoch"`` of the attempts in
        ``switch_attempts_`` whose ``"confirmed"`` is False and that were not kept).
        Marked by grey dashed vertical lines; None or empty marks nothing.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes of the loss curves (log scale with ``log_loss=True``).
    accuracy_ax_ : matplotlib Axes
        Axes of the score curves (accuracy or R^2): the second panel, or a twin of
        ``ax_`` sharing its x-axis when :meth:`plot` was given a single Axes.
    figure_ : matplotlib Figure
        Figure holding the axes.
    lines_ : dict of str to matplotlib Line2D
        Curves keyed by ``"train_loss"``, ``"val_loss"`` and the score columns
        (``"train_accuracy"``, ``"val_accuracy"`` or ``"train_r2"``, ``"val_r2"``);
        validation keys only with validation data.
    switch_lines_ : list of matplotlib Line2D
        The vertical switch lines, one per axes; empty without a switch.
    kept_lines_ : list of matplotlib Line2D
        The vertical lines at ``kept_epoch``, one per axes; empty when it is None.
    ntk_spans_ : list of matplotlib patches
        The shaded NTK phases, one per axes and run of consecutive NTK epochs; empty
        without an NTK phase.
    rejected_lines_ : list of matplotlib Line2D
        The vertical lines at ``rejected_epochs``, one per axes and epoch.

    See Also
    --------
    SwitchStatisticDisplay : The switch statistic per epoch.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skntk import HybridNTKClassifier
    >>> from skntk.plotting import TrainingHistoryDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = HybridNTKClassifier(hidden_layer_sizes=(16,), switch="fixed_epoch",
    ...                           switch_epoch=5, max_sgd_epochs=10, ntk_epochs=5,
    ...                           random_state=0).fit(X, y)
    >>> display = TrainingHistoryDisplay.from_estimator(clf)
    >>> display.switch_lines_[0].get_xdata()[0]
    5
    """

    def __init__(self, history, switch_epoch=None, kept_epoch=None, rejected_epochs=None):
        self.history = history
        self.switch_epoch = switch_epoch
        self.kept_epoch = kept_epoch
        self.rejected_epochs = rejected_epochs

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, log_loss=False):
        """Plot the training history of a fitted estimator.

        The switch epoch is marked when the SGD phase ended by its criterion or an NTK
        phase followed. When the NTK phase stopped early (``ntk_stop_reason_``
        ``"validation_score"`` or ``"converged"``) and kept the state of one of its
        epochs (``ntk_best_epoch_ > 0``), that epoch, ``switch_epoch_ +
        ntk_best_epoch_`` overall, is marked too, and so are the switches that the NTK
        phase did not confirm (``switch_attempts_``).

        Parameters
        ----------
        estimator : HybridNTKClassifier or HybridNTKRegressor
            A fitted estimator, or a fitted Pipeline or search (``best_estimator_``)
            ending in one.
        ax : matplotlib Axes, pair of Axes or None, default=None
            Where to draw; see :meth:`plot`.
        log_loss : bool, default=False
            Draw the loss on a log scale; see :meth:`plot`.

        Returns
        -------
        display : TrainingHistoryDisplay
            The display, drawn.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If ``estimator`` is not fitted.
        TypeError
            If ``estimator`` has no ``history_``.
        ImportError
            If matplotlib is not installed.
        """
        _require_matplotlib()
        clf = _fitted_hybrid(estimator)
        return cls(clf.history_, _marked_switch_epoch(clf), _kept_ntk_epoch(clf),
                   _rejected_switch_epochs(clf)).plot(ax=ax, log_loss=log_loss)

    def plot(self, ax=None, *, log_loss=False):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, pair of Axes or None, default=None
            None draws loss and score side by side in a new figure. A single Axes
            gets the loss (solid lines) and a twin y-axis the score (dashed lines).
            A pair ``(loss_ax, score_ax)`` gets one panel each.
        log_loss : bool, default=False
            Draw the loss axis on a log scale, which shows the small late decreases
            of a loss that fell by orders of magnitude. The score axis stays linear.

        Returns
        -------
        self : TrainingHistoryDisplay
            With ``ax_``, ``accuracy_ax_``, ``figure_`` and the artists set.

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        ValueError
            If ``history`` has no score columns.
        """
        _require_matplotlib()
        score = _score_key(self.history)
        loss_label, score_name, score_label = _SCORES[score]
        twin = ax is not None and not isinstance(ax, (list, tuple, np.ndarray))
        if ax is None:
            loss_ax, acc_ax = _new_axes(2)
        elif twin:
            loss_ax, acc_ax = ax, ax.twinx()
        else:
            loss_ax, acc_ax = ax

        h = self.history
        epochs = np.asarray(h["epoch"])
        acc_style = "--" if twin else "-"
        self.lines_ = {}
        for key, curve, axes, style, ylabel in (
                ("loss", "loss", loss_ax, "-", loss_label),
                (score, score_name, acc_ax, acc_style, score_label)):
            for split, color, name in (("train", _TRAIN_COLOR, "train"),
                                       ("val", _VAL_COLOR, "validation")):
                values = np.asarray(h[f"{split}_{key}"], dtype=float)
                if np.all(np.isnan(values)):
                    continue
                self.lines_[f"{split}_{key}"], = axes.plot(
                    epochs, values, style, color=color, marker=".", label=f"{name} {curve}")
            axes.set_ylabel(ylabel)
        if log_loss:
            loss_ax.set_yscale("log")

        axes_pair = [loss_ax] if twin else [loss_ax, acc_ax]
        self.switch_lines_, self.ntk_spans_, self.kept_lines_ = [], [], []
        self.rejected_lines_ = []
        rejected = list(self.rejected_epochs or ())
        marked = [epochs, rejected]
        for axes in axes_pair:
            if self.switch_epoch is not None:
                self.switch_lines_.append(_mark_switch(
                    axes, self.switch_epoch, f"switch (epoch {self.switch_epoch})"))
            for index, epoch in enumerate(rejected):
                self.rejected_lines_.append(axes.axvline(
                    epoch, color="0.5", linestyle="--", linewidth=1,
                    label="switch not confirmed" if index == 0 else None))
            for index, (first, last) in enumerate(_ntk_runs(epochs, h["phase"])):
                # Each run starts at its switch: the epoch before its first NTK epoch.
                self.ntk_spans_.append(axes.axvspan(first - 1, last, color=_NTK_COLOR,
                                                    alpha=0.12,
                                                    label="NTK phase" if index == 0 else None))
                marked.append([first - 1])
            if self.kept_epoch is not None:
                self.kept_lines_.append(axes.axvline(
                    self.kept_epoch, color=_NTK_COLOR, linestyle=":", linewidth=1.5,
                    label="kept NTK-phase epoch"))
        marked += [[e] for e in (self.switch_epoch, self.kept_epoch) if e is not None]
        for axes in (loss_ax, acc_ax):
            _integer_epochs(axes, np.concatenate([np.ravel(m) for m in marked]))
        if twin:
            handles = loss_ax.get_legend_handles_labels()
            acc_handles = acc_ax.get_legend_handles_labels()
            # Loss falls and the score rises: the middle right is usually free.
            loss_ax.legend(handles[0] + acc_handles[0], handles[1] + acc_handles[1],
                           loc="center right", fontsize="small")
        else:
            for axes in axes_pair:
                axes.legend(fontsize="small")
        self.ax_, self.accuracy_ax_, self.figure_ = loss_ax, acc_ax, loss_ax.figure
        return self


class SwitchStatisticDisplay:
    """The switch statistic per epoch, on a log scale, against its threshold.

    Draws the statistic monitored by the switch criterion after every SGD epoch, the
    threshold as a horizontal dashed line and the switch epoch as a vertical dotted
    line. The SGD phase ends at the first epoch where the statistic falls below the
    threshold. Build it with :meth:`from_estimator`, or from arrays and then
    :meth:`plot`.

    Parameters
    ----------
    epochs : array-like of shape (n_epochs,)
        Epoch numbers (1-based).
    statistic : array-like of shape (n_epochs,)
        Statistic after each epoch, in the unit of the criterion (kernel units for
        ``"ntk_norm"``, parameter units for ``"param_norm"``, none for
        ``"kernel_distance"``); NaN, infinite and non-positive values are not drawn.
    threshold : float, array-like of shape (n_epochs,) or None, default=None
        Threshold of the criterion: one value (a horizontal line) or one per epoch
        (the relative automatic thresholds of ``"param_norm"`` and ``"ntk_norm"``,
        drawn as a curve); None, NaN or values <= 0 (which a log scale cannot show)
        draw nothing.
    switch_epoch : int or None, default=None
        Last SGD epoch, marked by a vertical line; None marks nothing.
    switch_reached : bool, default=True
        Whether the criterion held at ``switch_epoch`` (else the budget ran out); sets
        the label of the vertical line.
    criterion : str or None, default=None
        Name of the criterion (a value of ``switch``); the y-axis label says what its
        statistic is (for ``"linearization_error"``: ``eps(e-k, e) / eps(0, e)``; for
        ``"kernel_velocity"``: kernel velocity ``v_e / d_e``).
    window : int or None, default=None
        The window ``k`` of the statistic, in epochs (``switch_window``), shown on the
        y-axis label; None shows none.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes of the plot.
    figure_ : matplotlib Figure
        Figure holding the axes.
    line_ : matplotlib Line2D
        The statistic.
    threshold_line_ : matplotlib Line2D or None
        The threshold line (horizontal for one value, a curve for one per epoch).
    switch_line_ : matplotlib Line2D or None
        The vertical switch line.

    See Also
    --------
    TrainingHistoryDisplay : Loss and score per epoch.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skntk import HybridNTKClassifier
    >>> from skntk.plotting import SwitchStatisticDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = HybridNTKClassifier(hidden_layer_sizes=(16,), switch="param_norm",
    ...                           switch_threshold=0.5, max_sgd_epochs=30,
    ...                           random_state=0).fit(X, y)
    >>> display = SwitchStatisticDisplay.from_estimator(clf)
    >>> float(display.threshold_line_.get_ydata()[0])
    0.5
    """

    def __init__(self, epochs, statistic, threshold=None, switch_epoch=None,
                 switch_reached=True, criterion=None, window=None):
        self.epochs = epochs
        self.statistic = statistic
        self.threshold = threshold
        self.switch_epoch = switch_epoch
        self.switch_reached = switch_reached
        self.criterion = criterion
        self.window = window

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Plot the switch statistic recorded by a fitted estimator.

        Parameters
        ----------
        estimator : HybridNTKClassifier or HybridNTKRegressor
            A fitted estimator with a monitored criterion (``switch`` is
            ``"linearization_error"``, ``"kernel_velocity"``, ``"param_norm"``,
            ``"ntk_norm"`` or ``"kernel_distance"``), or a fitted Pipeline or search ending in one.
        ax : matplotlib Axes or None, default=None
            Where to draw; None creates a new figure.

        Returns
        -------
        display : SwitchStatisticDisplay
            The display, drawn.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If ``estimator`` is not fitted.
        TypeError
            If ``estimator`` has no ``history_``.
        ValueError
            If the criterion records no statistic (``switch="fixed_epoch"`` or None).
        ImportError
            If matplotlib is not installed.
        """
        _require_matplotlib()
        clf = _fitted_hybrid(estimator)
        h = clf.history_
        sgd = h["phase"] == "sgd"
        if not np.any(np.isfinite(h["switch_statistic"][sgd])):
            raise ValueError(
                f"switch={clf.switch_!r} records no switch statistic, so there is nothing to "
                f"plot. Fit with switch='linearization_error', 'kernel_velocity', 'ntk_norm', "
                f"'kernel_distance' or "
                f"'param_norm' (and switch_threshold=0 for a scouting run that only records "
                f"it).")
        thresholds = h["switch_threshold"][sgd]
        checked = thresholds[np.isfinite(thresholds)]
        threshold = (thresholds if checked.size and np.ptp(checked) > 0
                     else clf.switch_threshold_)
        return cls(h["epoch"][sgd], h["switch_statistic"][sgd], threshold,
                   _marked_switch_epoch(clf), clf.switch_reached_, clf.switch_,
                   clf.switch_window).plot(ax=ax)

    def plot(self, ax=None):
        """Draw the statistic, the threshold and the switch epoch.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Where to draw; None creates a new figure.

        Returns
        -------
        self : SwitchStatisticDisplay
            With ``ax_``, ``figure_`` and the artists set.

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        _require_matplotlib()
        if ax is None:
            (ax,) = _new_axes(1)
        epochs = np.asarray(self.epochs)
        statistic = np.asarray(self.statistic, dtype=float)
        # Criteria checked every k epochs leave NaN between checks: join the checks.
        # (inf, a kernel that has not moved yet, cannot be drawn either.)
        shown = np.isfinite(statistic) & (statistic > 0)
        self.line_, = ax.plot(epochs[shown], statistic[shown], marker=".", color=_TRAIN_COLOR,
                              label="switch statistic")
        ax.set_yscale("log")
        marked = [epochs[shown]]
        self.threshold_line_ = None
        threshold = self.threshold
        if threshold is not None and np.ndim(threshold) == 1:
            threshold = np.asarray(threshold, dtype=float)
            drawn = threshold > 0
            if np.any(drawn):
                self.threshold_line_, = ax.plot(epochs[drawn], threshold[drawn], color="0.3",
                                                linestyle="--", label="threshold")
                marked.append(epochs[drawn])
        elif threshold is not None and math.isfinite(threshold) and threshold > 0:
            self.threshold_line_ = ax.axhline(threshold, color="0.3", linestyle="--",
                                              label=f"threshold {threshold:.3g}")
        self.switch_line_ = None
        if self.switch_epoch is not None:
            what = "switch" if self.switch_reached else "budget spent, switch"
            self.switch_line_ = _mark_switch(ax, self.switch_epoch,
                                             f"{what} (epoch {self.switch_epoch})")
            marked.append([self.switch_epoch])
        ax.set_ylabel(_statistic_label(self.criterion, self.window))
        _integer_epochs(ax, np.concatenate([np.ravel(m) for m in marked]))
        ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, ax.figure
        return self


class KernelDiagnosticsDisplay:
    """How the monitor kernel evolves over the SGD phase: four panels per epoch.

    Draws what ``kernel_diagnostics=True`` records (see
    :class:`~skntk.HybridNTKClassifier`): (1) the cosine distance of the kernel from
    its initial value, ``1 - cos(K_e, K_0)``, and its velocity
    ``1 - cos(K_e, K_{e-k})``, on a log scale; (2) the centred kernel-target
    alignment with the monitor labels; (3) the effective rank; (4) the largest
    eigenvalues, on a log scale (kernel units: squared output per squared parameter).
    The switch epoch is marked on each panel.

    Parameters
    ----------
    history : dict of ndarray
        ``history_`` of a fit with ``kernel_diagnostics=True`` (the rows of the NTK
        phase, NaN, are not drawn).
    switch_epoch : int or None, default=None
        Epoch to mark as the switch; None marks nothing.
    window : int or None, default=None
        ``k`` of the velocity (``switch_window``), shown in its label.

    Attributes
    ----------
    axes_ : list of 4 matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    TrainingHistoryDisplay : Loss and score per epoch.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skntk import HybridNTKClassifier
    >>> from skntk.plotting import KernelDiagnosticsDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = HybridNTKClassifier(hidden_layer_sizes=(16,), max_sgd_epochs=5,
    ...                           ntk_phase=None, kernel_diagnostics=True,
    ...                           random_state=0).fit(X, y)
    >>> display = KernelDiagnosticsDisplay.from_estimator(clf)
    >>> len(display.axes_)
    4
    """

    def __init__(self, history, switch_epoch=None, window=None):
        self.history = history
        self.switch_epoch = switch_epoch
        self.window = window

    @classmethod
    def from_estimator(cls, estimator):
        """Plot the kernel diagnostics of a fitted estimator (a new figure).

        Parameters
        ----------
        estimator : HybridNTKClassifier or HybridNTKRegressor
            Fitted with ``kernel_diagnostics=True``, or a fitted Pipeline or search
            ending in one.

        Returns
        -------
        display : KernelDiagnosticsDisplay
            The display, drawn.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If it recorded no kernel diagnostics.
        """
        _require_matplotlib()
        estimator = _fitted_hybrid(estimator)
        if not np.any(np.isfinite(estimator.history_["kernel_alignment"])):
            raise ValueError(
                "This estimator recorded no kernel diagnostics. Fit it with "
                "kernel_diagnostics=True (and max_sgd_epochs >= 1).")
        return cls(estimator.history_, _marked_switch_epoch(estimator),
                   estimator.switch_window).plot()

    def plot(self):
        """Draw on a new figure of four panels.

        Returns
        -------
        self : KernelDiagnosticsDisplay
        """
        _require_matplotlib()
        import matplotlib.pyplot as plt

        h = self.history
        sgd = np.asarray(h["phase"]) == "sgd"
        epochs = np.asarray(h["epoch"])[sgd]
        fig, axes = plt.subplots(1, 4, figsize=(17.0, 3.6), layout="constrained")
        k = "k" if self.window is None else str(self.window)
        moved, velocity = (np.asarray(h[name], float)[sgd]
                           for name in ("kernel_distance_from_init", "kernel_velocity"))
        for values, label in ((moved, r"from init $1 - \cos(K_e, K_0)$"),
                              (velocity, rf"velocity $1 - \cos(K_e, K_{{e-{k}}})$")):
            shown = np.where(values > 0, values, np.nan)
            axes[0].plot(epochs, shown, marker="o", markersize=3, label=label)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("kernel cosine distance")
        axes[0].legend(fontsize="small")
        axes[1].plot(epochs, np.asarray(h["kernel_alignment"], float)[sgd], marker="o",
                     markersize=3)
        axes[1].set_ylabel("centred kernel-target alignment")
        axes[2].plot(epochs, np.asarray(h["kernel_effective_rank"], float)[sgd], marker="o",
                     markersize=3)
        axes[2].set_ylabel("effective rank")
        top = np.asarray(h["kernel_top_eigenvalues"], float)[sgd]
        for i in range(top.shape[1]):
            axes[3].plot(epochs, top[:, i], marker="o", markersize=3, label=rf"$\lambda_{i + 1}$")
        axes[3].set_yscale("log")
        axes[3].set_ylabel("largest kernel eigenvalues")
        axes[3].legend(fontsize="small", ncols=2)
        for ax in axes:
            if self.switch_epoch is not None:
                _mark_switch(ax, self.switch_epoch, f"switch (epoch {self.switch_epoch})")
            _integer_epochs(ax, np.append(epochs, [] if self.switch_epoch is None
                                          else [self.switch_epoch]))
        self.axes_, self.figure_ = list(axes), fig
        return self
