import os

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

# The suite fits hundreds of tiny networks on data of many shapes, so XLA compiling
# their programs, not running them, is nearly all of its time. LLVM's optimisation
# level 0 halves each compilation (results agree to float32 round-off; a fit on real
# data runs about 1.6 times slower). Set before JAX starts its CPU backend, and
# inherited by the processes tests start; an explicit level in XLA_FLAGS wins, e.g.
# XLA_FLAGS=--xla_backend_optimization_level=2 to test the programs users run.
_OPT_LEVEL_FLAG = "--xla_backend_optimization_level"
if _OPT_LEVEL_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_OPT_LEVEL_FLAG}=0".strip()


@pytest.fixture(scope="session")
def digits_small():
    """500 standardised digits samples (float64) and their labels."""
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X[:500])
    return X, y[:500]


def blobs(n_samples=60, n_features=4, n_classes=3, seed=0):
    """Well separated Gaussian blobs."""
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=4.0, size=(n_classes, n_features))
    y = np.arange(n_samples) % n_classes
    X = centers[y] + rng.normal(size=(n_samples, n_features))
    return X, y
