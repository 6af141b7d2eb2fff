"""Memory checks of the dense kernels of the ``"kernel"`` NTK phase (``max_kernel_bytes``).

The phase forms at most these dense kernels, each checked before it is allocated and
counted with everything alive beside it at its peak:

- the ``N x N`` training kernel of the dense solver, :data:`TRAINING_KERNEL_COPIES`
  float32 kernels' worth at its eigendecomposition;
- the ``n_val x N`` validation cross kernel of the dense solver, formed once when the
  phase starts and kept for its epochs, :data:`CROSS_KERNEL_COPIES` times, beside the
  ``N x N`` float64 eigenvectors;
- the kernels of ``predict_variance`` (:mod:`skntk._kernel_solvers`).

Prediction forms no kernel matrix: it applies ``K_bar(X, X_fit_)`` to ``dual_coef_``
block by block (:func:`skntk._matrix_free.cross_kernel_apply`), in memory independent
of ``N`` and of the number of predicted rows but not of the network; its blocks are
sized to the budget before training (:func:`prediction_block`).
"""

import numpy as np

from ._kernel_engine import product_bytes
from ._matrix_free import DEFAULT_BLOCK_SIZE
from ._network import MODEL_PRODUCT_BLOCK, ModelSize, model_working_bytes, network_sizes
from .ntk import (DEFAULT_MAX_KERNEL_BYTES, _empirical_ntk, _format_bytes,
                  _working_set_bytes, check_kernel_budget, kernel_nbytes)

KERNEL_BLOCK_SIZE = 512
"""``block_size`` of :func:`skntk.ntk.empirical_ntk` in the kernel phase."""

TRAINING_KERNEL_COPIES = 8
"""Peak of the dense training kernel, in float32 kernels: at the eigendecomposition the
float64 ``K_bar`` (two float32 kernels' worth), its symmetrised float64 copy, the
eigensolver's float64 copy and the float64 eigenvectors are alive together."""

CROSS_KERNEL_COPIES = 5
"""Peak of a cross kernel (validation or ``predict_variance``), in float32 kernels: the
float32 result of :func:`skntk.ntk.empirical_ntk`, its float64 copy and the float64
copy divided by ``C``."""

TRAINING_KERNEL = ("training kernel of ntk_phase='kernel'",
                   "use ntk_phase='frozen_jacobian' (which forms no kernel matrix), "
                   "kernel_solver='matrix_free' (or 'auto') or fewer training samples "
                   "(the working memory includes the kernel's float64 copies and "
                   "eigenvectors)")
VALIDATION_KERNEL = ("validation cross kernel of ntk_phase='kernel'",
                     "use fewer validation samples (a smaller `X_val` or a lower "
                     "`validation_fraction`) or kernel_solver='matrix_free' (which "
                     "applies it block by block)")
EIGENVECTORS = "the eigenvectors of the training kernel, kept for the NTK epochs"
"""What :data:`VALIDATION_KERNEL` is held beside."""

VARIANCE_TRAINING_KERNEL = (
    "training kernel of predict_variance",
    "refit with kernel_solver='matrix_free' (which forms no N x N kernel) or a larger "
    "max_kernel_bytes (the working memory includes the kernel's float64 copies)")
VARIANCE_CROSS_KERNEL = (
    "cross kernel of predict_variance",
    "refit with a larger max_kernel_bytes or on fewer training samples (predict_variance "
    "forms it for blocks of 256 rows against the whole training set, beside the factored "
    "training kernel)")


def check_kernel(sizes, n_rows, n_train, max_bytes, labels, copies=1, held_bytes=0,
                 held_what="other arrays"):
    """Refuse one dense kernel of the kernel phase before it is allocated.

    Parameters
    ----------
    sizes : tuple of int or ModelSize
        ``(n_features, *hidden_layer_sizes, n_outputs)``, or a model's
        :class:`skntk._network.ModelSize`.
    n_rows, n_train : int
        Shape ``(n_rows, n_train)`` of the float32 kernel.
    max_bytes : int, float or None
        The budget (``max_kernel_bytes``; ``None``: the default of
        :func:`skntk.ntk.check_kernel_budget`).
    labels : pair of str
        What the kernel is and what lowers its memory, for the message.
    copies : int, default=1
        Buffers of the kernel's size alive at its peak (the kernel included).
    held_bytes : int, default=0
        Bytes held beside it, described by ``held_what``.

    Returns
    -------
    n_bytes : int
        The bytes counted: ``copies`` kernels, the working memory of
        :func:`skntk.ntk.empirical_ntk` and ``held_bytes``.

    Raises
    ------
    ValueError
        If that exceeds ``max_bytes``; the message gives the sizes and what lowers them.
    """
    what, fix_hint = labels
    itemsize = np.dtype(np.float32).itemsize
    if isinstance(sizes, ModelSize):
        working = model_working_bytes(sizes, n_rows, n_train, itemsize)
    else:
        working = _working_set_bytes(sizes, n_rows, n_train, KERNEL_BLOCK_SIZE, False,
                                     False, itemsize)
    extra = (copies - 1) * kernel_nbytes(n_rows, n_train, np.float32) + working
    return check_kernel_budget(n_rows, n_train, np.float32, max_bytes, what=what,
                               fix_hint=fix_hint, extra_bytes=extra,
                               budget_name="max_kernel_bytes", held_bytes=held_bytes,
                               held_what=held_what)


PREDICTION = ("working memory of the kernel phase's predictions",
              "use a smaller `hidden_layer_sizes` (the memory grows with the square of "
              "the widths times the number of outputs) or fewer outputs")


def prediction_block(sizes, n_train, max_bytes):
    """Rows per block with which the kernel phase predicts within ``max_kernel_bytes``,
    checked before training.

    Prediction applies ``K_bar(x, X_fit_)`` to ``dual_coef_``
    (:func:`skntk._matrix_free.cross_kernel_apply`, float64 sums): the moments,
    ``8 · C · Σ_l a_l f_l`` bytes, and the temporaries of one block of rows
    (:func:`skntk._kernel_engine.product_bytes`). The block is the largest up to
    ``min(2048, N)`` whose working memory fits.

    Parameters
    ----------
    sizes : tuple of int or ModelSize
        ``(n_features, *hidden_layer_sizes, n_outputs)``, or a model's
        :class:`skntk._network.ModelSize` (blocks of at most
        :data:`skntk._network.MODEL_PRODUCT_BLOCK` rows).
    n_train : int
        Training samples ``N``.
    max_bytes : int, float or None
        The budget (``None``: the default of :func:`skntk.ntk.check_kernel_budget`).

    Returns
    -------
    block_size : int

    Raises
    ------
    ValueError
        If even one row at a time exceeds ``max_bytes``; the message gives the size
        and what lowers it.
    """
    budget = DEFAULT_MAX_KERNEL_BYTES if max_bytes is None else max_bytes
    n_outputs, itemsize = sizes[-1], np.dtype(np.float64).itemsize
    block = max(min(DEFAULT_BLOCK_SIZE, int(n_train)), 1)
    if isinstance(sizes, ModelSize):
        # A model's products (skntk._model_kernel): the pulled-back coefficients,
        # C x C parameter vectors, and per row about two C-output parameter vectors.
        block = min(block, MODEL_PRODUCT_BLOCK)
        moments = itemsize * n_outputs * n_outputs * sizes.n_parameters
        per_row = 2 * itemsize * n_outputs * sizes.n_parameters
    else:
        per_row = product_bytes(sizes, n_outputs, 1, itemsize) - product_bytes(
            sizes, n_outputs, 0, itemsize)
        moments = product_bytes(sizes, n_outputs, 0, itemsize)
    if moments + per_row > budget:
        what, fix_hint = PREDICTION
        raise ValueError(
            f"The {what} (network {sizes}: the moments of dual_coef_, {n_outputs} x the "
            f"sum over layers of the product of the two factor widths, in float64, and "
            f"one row) need about {_format_bytes(moments + per_row)}, more than the "
            f"budget `max_kernel_bytes` = {_format_bytes(budget)}. To fit, {fix_hint}; "
            f"or raise `max_kernel_bytes`.")
    if np.isfinite(budget):
        block = min(block, int((budget - moments) // per_row))
    return block


def check_kernel_phase_budget(sizes, n_train, max_bytes, n_val=0):
    """Check every kernel the dense solver of the kernel phase will build, before any is
    allocated: the training kernel and, with validation rows, the validation cross
    kernel beside the ``N x N`` float64 eigenvectors (see the module docstring).

    Parameters
    ----------
    sizes : tuple of int
        ``(n_features, *hidden_layer_sizes, n_outputs)``.
    n_train : int
        Training samples ``N``: the training kernel is ``N x N``.
    max_bytes : int, float or None
        Budget of the memory held at once (``max_kernel_bytes``).
    n_val : int, default=0
        Rows of the validation cross kernel (0: none).

    Returns
    -------
    n_bytes : int
        The larger of the counts, when both are within ``max_bytes``.

    Raises
    ------
    ValueError
        If one of them exceeds ``max_bytes``; the message gives its size and what
        lowers it.
    """
    counts = [check_kernel(sizes, n_train, n_train, max_bytes, TRAINING_KERNEL,
                           copies=TRAINING_KERNEL_COPIES)]
    if n_val:
        counts.append(check_kernel(sizes, n_val, n_train, max_bytes, VALIDATION_KERNEL,
                                   copies=CROSS_KERNEL_COPIES,
                                   held_bytes=kernel_nbytes(n_train, n_train, np.float64),
                                   held_what=EIGENVECTORS))
    return max(counts)


def kernel_bar(params_star, X1, X2, n_classes, max_bytes, labels, copies=CROSS_KERNEL_COPIES,
               mesh=None, held_bytes=0, held_what="other arrays", layer_scales=None):
    """``K_bar(X1, X2) = K / C`` as float64 numpy, after :func:`check_kernel`.

    Parameters
    ----------
    params_star : list of (W, b)
        The parameters ``theta*`` (jax arrays).
    X1, X2 : jax.Array of shape (n1, d) and (n2, d)
    n_classes : int
        ``C``.
    max_bytes, labels, copies, held_bytes, held_what
        As in :func:`check_kernel`.
    mesh : jax.sharding.Mesh or None, default=None
        Devices over which the row blocks are split.
    layer_scales : tuple or None, default=None
        The per-layer scales ``D`` of the parameterisation: ``K = J D J^T``.

    Returns
    -------
    K_bar : ndarray of shape (n1, n2), float64
        Computed in float32 by :func:`skntk.ntk.empirical_ntk` (its layer-wise
        implementation, Novak et al., ICML 2022), then divided by ``C`` in float64.

    Raises
    ------
    ValueError
        From :func:`check_kernel`, before anything is allocated.
    """
    check_kernel(network_sizes(layer_scales, params_star, X1.shape[1]), X1.shape[0],
                 X2.shape[0], max_bytes, labels, copies, held_bytes, held_what)
    K = _empirical_ntk(params_star, X1, X2, block_size=KERNEL_BLOCK_SIZE, max_bytes=np.inf,
                       mesh=mesh, scales=layer_scales)
    return np.asarray(K, dtype=np.float64) / n_classes

