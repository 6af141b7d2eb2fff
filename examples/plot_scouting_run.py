"""
===========================================
A scouting run: choosing a switch threshold
===========================================

The switch criteria compare the network, or its neural tangent kernel on a
monitor subset, with its state ``k = switch_window`` epochs earlier, and end the
SGD phase when the change falls below ``switch_threshold``. The statistic has
units: ``"ntk_norm"`` is measured in units of the kernel, ``"param_norm"`` in
units of the weights, which both depend on the data and the width.
``"kernel_distance"`` is scale free.

A threshold of 0 never triggers. Such a *scouting run* trains by SGD for the
whole budget and records the statistic after every epoch in
``history_["switch_statistic"]``: look at it, then pick the threshold.
"""

# %%
# Scouting runs for the three criteria
# ------------------------------------

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skntk import HybridNTKClassifier
from skntk.plotting import SwitchStatisticDisplay, TrainingHistoryDisplay

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                    random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

common = dict(hidden_layer_sizes=(128, 128), max_sgd_epochs=40, switch_window=3,
              random_state=0)
# A scouting run never switches, on purpose: it gives no warning.
scouts = {criterion: HybridNTKClassifier(switch=criterion, switch_threshold=0, ntk_phase=None,
                                         **common).fit(X_train, y_train)
          for criterion in ("ntk_norm", "kernel_distance", "param_norm")}

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
for ax, (criterion, scout) in zip(axes, scouts.items()):
    SwitchStatisticDisplay.from_estimator(scout, ax=ax)
    ax.set_title(criterion)
plt.show()

# %%
# The statistic is undefined (NaN, not drawn) for the first ``k - 1`` epochs.
# Each curve falls fast while SGD reshapes the kernel and then flattens: the
# kernel has settled and the rest of training can happen in the NTK regime.
# There is no threshold line: the threshold is 0.
#
# Choosing the threshold
# ----------------------
# A simple rule: switch once the change over ``k`` epochs has fallen to a given
# fraction of its largest value, here 25%. Because a run with the same
# ``random_state`` follows the same trajectory, the scouting run tells in
# advance at which epoch the switch will happen.
statistic = scouts["ntk_norm"].history_["switch_statistic"]
epochs = scouts["ntk_norm"].history_["epoch"]
threshold = 0.25 * np.nanmax(statistic)
expected = epochs[np.flatnonzero(statistic < threshold)[0]]
print(f"threshold {threshold:.4g}: the switch will happen at epoch {expected}")

# %%
# The same run with that threshold
# --------------------------------
clf = HybridNTKClassifier(switch="ntk_norm", switch_threshold=threshold,
                          ntk_phase="frozen_jacobian", **common).fit(X_train, y_train)
print(f"switch at epoch {clf.switch_epoch_} (criterion met: {clf.switch_reached_}); "
      f"test accuracy {clf.score(X_test, y_test):.4f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
SwitchStatisticDisplay.from_estimator(clf, ax=axes[0])
axes[0].set_title("ntk_norm with the chosen threshold")
TrainingHistoryDisplay.from_estimator(clf, ax=axes[1])
axes[1].set_title("training history (accuracy on the right axis)")
plt.show()

# %%
# The statistic crosses the dashed threshold at the dotted switch epoch, and the
# NTK phase (shaded) continues from there.
#
# Other ways to choose
# --------------------
# * ``switch_threshold="auto"`` (the default) is a share of the movement since
#   initialisation: ``0.1 * D_e`` for ``"ntk_norm"`` and
#   ``0.1 * ||theta_e - theta_0||_2`` for ``"param_norm"``, so that neither holds
#   before the network has moved; ``1e-3`` for ``"kernel_distance"``.
#   ``history_["switch_threshold"]`` holds the value of every epoch.
# * The default criterion, ``"linearization_error"``, divides the linearisation
#   error of the last ``k`` epochs by that of the whole path from initialisation;
#   ``"kernel_velocity"`` divides the kernel's velocity by the distance it has
#   travelled. Both are scale free, and their automatic thresholds (0.15 and 0.01)
#   come from the benchmark in the user guide ("When does the hybrid pay off").
# * Treat the threshold as a hyper-parameter and cross-validate it: see
#   :ref:`sphx_glr_auto_examples_plot_grid_search.py`.

# sphinx_gallery_start_ignore
# Run as a plain script, save the figures still open (see README.txt); sphinx-gallery
# is imported when it runs the examples, and captures the figures itself.
import sys  # noqa: E402

if "sphinx_gallery" not in sys.modules:
    from _save_figures import save_open_figures  # noqa: E402

    save_open_figures(__file__)
# sphinx_gallery_end_ignore
