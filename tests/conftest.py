import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler


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
