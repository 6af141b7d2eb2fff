"""Plots of a fitted :class:`~skntk.HybridNTKClassifier`, as scikit-learn Display objects.

Each display is built with ``from_estimator(clf)``, which draws at once, or from plain
arrays with its constructor followed by :meth:`plot`. After drawing, ``figure_`` and
``ax_`` hold the matplotlib figure and axes.

- :class:`TrainingHistoryDisplay`: loss and accuracy per epoch, on the training and
  validation data, with the switch epoch marked and the NTK phase shaded.
- :class:`SwitchStatisticDisplay`: the monitored switch statistic per epoch on a log
  scale, with the threshold and the switch epoch marked.

matplotlib is optional (``pip install matplotlib``, or the ``plot`` extra:
``pip install ".[plot]"`` in a checkout of skntk); it is imported only when a
display draws.
"""

import math

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["SwitchStatisticDisplay", "TrainingHistoryDisplay"]

_TRAIN_COLOR, _VAL_COLOR, _SWITCH_COLOR, _NTK_COLOR = "C0", "C1", "C3", "C2"


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
    """The fitted HybridNTKClassifier inside ``estimator`` (itself, a Pipeline, a search).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    TypeError
        If it holds no training history (not a HybridNTKClassifier).
    """
    check_is_fitted(estimator)
    estimator = getattr(estimator, "best_estimator_", estimator)
    if hasattr(estimator, "steps"):
        estimator = estimator[-1]
    if not hasattr(estimator, "history_"):
        raise TypeError(
            f"Expected a fitted HybridNTKClassifier (or a Pipeline or search ending in one); "
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


def _integer_epochs(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


class TrainingHistoryDisplay:
    """Loss and accuracy per epoch of both training phases.

    Draws the training and validation curves of the mean cross-entropy and of the
    accuracy, marks the switch epoch with a vertical dotted line and shades the NTK
    phase. Build it with :meth:`from_estimator`, or from arrays and then :meth:`plot`.

    Parameters
    ----------
    history : dict of ndarray
        As ``HybridNTKClassifier.history_``: equal-length arrays ``epoch`` (int),
        ``phase`` (``"sgd"`` or ``"ntk"``), ``train_loss``, ``val_loss`` (mean
        cross-entropy, nats), ``train_accuracy``, ``val_accuracy`` (fractions in
        [0, 1]; NaN validation values are not drawn).
    switch_epoch : int or None, default=None
        Last SGD epoch, marked by a vertical line; None marks nothing.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes of the loss curves.
    accuracy_ax_ : matplotlib Axes
        Axes of the accuracy curves: the second panel, or a twin of ``ax_`` sharing
        its x-axis when :meth:`plot` was given a single Axes.
    figure_ : matplotlib Figure
        Figure holding the axes.
    lines_ : dict of str to matplotlib Line2D
        Curves keyed by ``"train_loss"``, ``"val_loss"``, ``"train_accuracy"`` and
        ``"val_accuracy"`` (validation keys only with validation data).
    switch_lines_ : list of matplotlib Line2D
        The vertical switch lines, one per axes; empty without a switch.
    ntk_spans_ : list of matplotlib patches
        The shaded NTK phase, one per axes; empty without an NTK phase.

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

    def __init__(self, history, switch_epoch=None):
        self.history = history
        self.switch_epoch = switch_epoch

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Plot the training history of a fitted estimator.

        Parameters
        ----------
        estimator : HybridNTKClassifier
            A fitted estimator, or a fitted Pipeline or search (``best_estimator_``)
            ending in one.
        ax : matplotlib Axes, pair of Axes or None, default=None
            Where to draw; see :meth:`plot`.

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
        return cls(clf.history_, _marked_switch_epoch(clf)).plot(ax=ax)

    def plot(self, ax=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, pair of Axes or None, default=None
            None draws loss and accuracy side by side in a new figure. A single Axes
            gets the loss (solid lines) and a twin y-axis the accuracy (dashed lines).
            A pair ``(loss_ax, accuracy_ax)`` gets one panel each.

        Returns
        -------
        self : TrainingHistoryDisplay
            With ``ax_``, ``accuracy_ax_``, ``figure_`` and the artists set.

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        _require_matplotlib()
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
        for key, axes, style, ylabel in (("loss", loss_ax, "-", "cross-entropy loss"),
                                         ("accuracy", acc_ax, acc_style, "accuracy")):
            for split, color, name in (("train", _TRAIN_COLOR, "train"),
                                       ("val", _VAL_COLOR, "validation")):
                values = np.asarray(h[f"{split}_{key}"], dtype=float)
                if np.all(np.isnan(values)):
                    continue
                self.lines_[f"{split}_{key}"], = axes.plot(
                    epochs, values, style, color=color, marker=".", label=f"{name} {key}")
            axes.set_ylabel(ylabel)
            _integer_epochs(axes)

        axes_pair = [loss_ax] if twin else [loss_ax, acc_ax]
        self.switch_lines_, self.ntk_spans_ = [], []
        ntk_epochs = epochs[np.asarray(h["phase"]) == "ntk"]
        for axes in axes_pair:
            if self.switch_epoch is not None:
                self.switch_lines_.append(_mark_switch(
                    axes, self.switch_epoch, f"switch (epoch {self.switch_epoch})"))
            if ntk_epochs.size:
                start = ntk_epochs.min() - 1 if self.switch_epoch is None else self.switch_epoch
                self.ntk_spans_.append(axes.axvspan(start, ntk_epochs.max(), color=_NTK_COLOR,
                                                    alpha=0.12, label="NTK phase"))
        if twin:
            handles = loss_ax.get_legend_handles_labels()
            acc_handles = acc_ax.get_legend_handles_labels()
            # Loss falls and accuracy rises: the middle right is usually free.
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
        Name of the criterion, shown on the y-axis label.

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
    TrainingHistoryDisplay : Loss and accuracy per epoch.

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
                 switch_reached=True, criterion=None):
        self.epochs = epochs
        self.statistic = statistic
        self.threshold = threshold
        self.switch_epoch = switch_epoch
        self.switch_reached = switch_reached
        self.criterion = criterion

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Plot the switch statistic recorded by a fitted estimator.

        Parameters
        ----------
        estimator : HybridNTKClassifier
            A fitted estimator with a monitored criterion (``switch`` is
            ``"kernel_velocity"``, ``"param_norm"``, ``"ntk_norm"`` or
            ``"kernel_distance"``), or a fitted Pipeline or search ending in one.
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
                f"plot. Fit with switch='kernel_velocity', 'ntk_norm', 'kernel_distance' or "
                f"'param_norm' (and switch_threshold=0 for a scouting run that only records "
                f"it).")
        thresholds = h["switch_threshold"][sgd]
        checked = thresholds[np.isfinite(thresholds)]
        threshold = (thresholds if checked.size and np.ptp(checked) > 0
                     else clf.switch_threshold_)
        return cls(h["epoch"][sgd], h["switch_statistic"][sgd], threshold,
                   _marked_switch_epoch(clf), clf.switch_reached_, clf.switch_).plot(ax=ax)

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
        self.threshold_line_ = None
        threshold = self.threshold
        if threshold is not None and np.ndim(threshold) == 1:
            threshold = np.asarray(threshold, dtype=float)
            drawn = threshold > 0
            if np.any(drawn):
                self.threshold_line_, = ax.plot(epochs[drawn], threshold[drawn], color="0.3",
                                                linestyle="--", label="threshold")
        elif threshold is not None and math.isfinite(threshold) and threshold > 0:
            self.threshold_line_ = ax.axhline(threshold, color="0.3", linestyle="--",
                                              label=f"threshold {threshold:.3g}")
        self.switch_line_ = None
        if self.switch_epoch is not None:
            what = "switch" if self.switch_reached else "budget spent, switch"
            self.switch_line_ = _mark_switch(ax, self.switch_epoch,
                                             f"{what} (epoch {self.switch_epoch})")
        ax.set_ylabel("switch statistic" + (f" ({self.criterion})" if self.criterion else ""))
        _integer_epochs(ax)
        ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, ax.figure
        return self
