"""
==========================================
The three NTK phases from one switch point
==========================================

From the same switch point ``theta*`` (after 10 epochs of SGD on a task where
features must be learned), continue training with each NTK phase:

* ``"frozen_jacobian"``: the network keeps making its predictions, but every
  full-batch gradient step uses the Jacobian frozen at ``theta*``;
* ``"linearized"``: the network is replaced by its first-order Taylor expansion
  ``f(theta*) + J(theta*) (theta - theta*)``, trained by full-batch gradient
  descent on the cross-entropy;
* ``"kernel"``: the closed-form gradient flow of the linearised network under the
  squared error, computed from one eigendecomposition of the NTK on the
  training set.
"""

# %%
# Data: a label hidden in an interaction
# --------------------------------------
# The label is the sign of ``x0 * x1``; 28 more inputs are noise.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skntk import HybridNTKClassifier
from skntk.plotting import TrainingHistoryDisplay

X = np.random.RandomState(0).normal(size=(3000, 30))
y = (X[:, 0] * X[:, 1] > 0).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y,
                                                    random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

# %%
# One switch point, three phases
# ------------------------------
# The same ``random_state`` gives the three runs the same SGD phase, hence the
# same ``theta*``. Each NTK phase runs 100 epochs with step
# ``ntk_learning_rate=0.3``; for ``"kernel"`` an epoch advances the flow time by
# that step.
common = dict(hidden_layer_sizes=(128, 128), learning_rate=0.1, switch="fixed_epoch",
              switch_epoch=10, ntk_epochs=100, random_state=0)
# ``ntk_solver="gd"``: the linearised phase by gradient descent too (its default,
# L-BFGS, converges in a few epochs), so that the three phases take the same steps.
fits = {phase: HybridNTKClassifier(ntk_phase=phase, ntk_learning_rate=0.3, ntk_solver="gd",
                                   **common)
        for phase in ("frozen_jacobian", "linearized", "kernel")}
for clf in fits.values():
    clf.fit(X_train, y_train)  # compiles the phase's jitted functions
    clf.fit(X_train, y_train)  # timed without compilation in ntk_time_
for phase, clf in fits.items():
    print(f"{phase:<16} test accuracy {clf.score(X_test, y_test):.4f}  "
          f"NTK phase {clf.ntk_time_:.2f} s")

# %%
# Training histories
# ------------------
# One row per phase: loss on the left, accuracy on the right. The SGD part
# (before the dotted line) is the same in every row.
#
# The first full-batch steps of ``"frozen_jacobian"`` and ``"linearized"``
# overshoot: a step of 0.3 is close to the largest that gradient descent on this
# kernel tolerates, so the loss jumps before it falls. A smaller step (0.2 here)
# removes the jump but needs more epochs to reach the same loss. The closed-form
# ``"kernel"`` flow has no step to overshoot.
fig, axes = plt.subplots(3, 2, figsize=(11, 9), sharex=True, layout="constrained")
for row, (phase, clf) in zip(axes, fits.items()):
    TrainingHistoryDisplay.from_estimator(clf, ax=row)
    row[0].set_title(f"{phase}: loss")
    row[1].set_title(f"{phase}: accuracy")
plt.show()

# %%
# Accuracy and cost
# -----------------
fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
names = list(fits)
ax_acc.bar(names, [fits[p].score(X_test, y_test) for p in names], color=["C0", "C1", "C2"])
ax_acc.set(ylabel="test accuracy", ylim=(0.5, 1.0))
ax_time.bar(names, [fits[p].ntk_time_ for p in names], color=["C0", "C1", "C2"])
ax_time.set(ylabel="NTK phase wall time (s)")
plt.show()

# %%
# What differs
# ------------
# * ``"frozen_jacobian"`` and ``"linearized"`` minimise the cross-entropy and
#   cost about one (frozen Jacobian) or two (linearised: a forward
#   Jacobian-vector product and a backward vector-Jacobian product) passes over
#   the training set per epoch. Neither forms a kernel matrix.
# * ``"kernel"`` builds the ``N x N`` training kernel once (time
#   ``O(N^2)`` times the width, memory ``O(N^2)``) and eigendecomposes it
#   (``O(N^3)``). After that set-up an epoch is a product with the
#   eigenvectors (``O(N^2 C)``), and the limit ``ntk_epochs=numpy.inf`` costs a
#   single one. Its squared-error loss on one-hot targets is not the loss SGD
#   minimised, which costs accuracy on this task.
# * Only the frozen-Jacobian network stays a network: its predictions are
#   non-linear in ``theta``, so it can drift from the linear model when the
#   steps are long.

# sphinx_gallery_start_ignore
# Run as a plain script, save the figures still open (see README.txt); sphinx-gallery
# is imported when it runs the examples, and captures the figures itself.
import sys  # noqa: E402

if "sphinx_gallery" not in sys.modules:
    from _save_figures import save_open_figures  # noqa: E402

    save_open_figures(__file__)
# sphinx_gallery_end_ignore
