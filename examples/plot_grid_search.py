"""
=============================================
Tuning the switch with GridSearchCV
=============================================

:class:`~skntk.HybridNTKClassifier` is a scikit-learn estimator: it goes into a
:class:`~sklearn.pipeline.Pipeline` and its parameters into a grid search. Here
the grid crosses the switch threshold of the scale-free ``"kernel_distance"``
criterion with the step size of the NTK phase, ``ntk_learning_rate``, with
3-fold cross-validation on digits.
"""

# %%
# The search
# ----------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skntk import HybridNTKClassifier
from skntk.plotting import TrainingHistoryDisplay

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                    random_state=0)

pipe = Pipeline([
    ("scale", StandardScaler()),
    ("hybrid", HybridNTKClassifier(hidden_layer_sizes=(64, 64), max_sgd_epochs=30,
                                   switch="kernel_distance", ntk_monitor_size=128,
                                   ntk_epochs=20, random_state=0)),
])
param_grid = {
    "hybrid__switch_threshold": [3e-2, 1e-2, 3e-3],
    "hybrid__ntk_learning_rate": [0.1, 0.5, 2.0],
}


def switch_epoch(estimator, X, y):
    """The epoch where the fitted pipeline's classifier left SGD (a "scorer")."""
    return estimator[-1].switch_epoch_


search = GridSearchCV(pipe, param_grid, cv=3, refit="accuracy",
                      scoring={"accuracy": "accuracy", "switch epoch": switch_epoch})
with warnings.catch_warnings():
    # The smallest threshold may not be reached within the budget.
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X_train, y_train)
print("best parameters:", search.best_params_)
print(f"cross-validated accuracy {search.best_score_:.4f}, "
      f"test accuracy {search.score(X_test, y_test):.4f}")

# %%
# Accuracy and switch epoch over the grid
# ---------------------------------------
# The second "scorer" records the switch epoch of every fit: a smaller
# threshold switches later, after more SGD epochs. The step size only acts after
# the switch.
thresholds = param_grid["hybrid__switch_threshold"]
rates = param_grid["hybrid__ntk_learning_rate"]
results = search.cv_results_


def as_grid(values):
    """Reshape a cv_results_ column to (threshold, learning rate)."""
    grid = np.empty((len(thresholds), len(rates)))
    for value, params in zip(values, results["params"]):
        grid[thresholds.index(params["hybrid__switch_threshold"]),
             rates.index(params["hybrid__ntk_learning_rate"])] = value
    return grid


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for ax, key, title, fmt in ((axes[0], "mean_test_accuracy", "mean CV accuracy", "{:.3f}"),
                            (axes[1], "mean_test_switch epoch", "mean switch epoch", "{:.1f}")):
    grid = as_grid(results[key])
    image = ax.imshow(grid, cmap="viridis")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, fmt.format(value), ha="center", va="center",
                color="white" if value < grid.mean() else "black")
    ax.set(xticks=range(len(rates)), xticklabels=rates, xlabel="ntk_learning_rate",
           yticks=range(len(thresholds)), yticklabels=thresholds,
           ylabel="switch_threshold", title=title)
    fig.colorbar(image, ax=ax)
plt.show()

# %%
# The refitted best pipeline
# --------------------------
# The displays accept the search or the pipeline: they plot its final
# :class:`~skntk.HybridNTKClassifier`.
TrainingHistoryDisplay.from_estimator(search)
plt.show()

# sphinx_gallery_start_ignore
# Run as a plain script, save the figures still open (see README.txt); sphinx-gallery
# is imported when it runs the examples, and captures the figures itself.
import sys  # noqa: E402

if "sphinx_gallery" not in sys.modules:
    from _save_figures import save_open_figures  # noqa: E402

    save_open_figures(__file__)
# sphinx_gallery_end_ignore
