"""The SGD phase: one jitted function per epoch, a loop over mini-batches.

The shuffling is drawn on the host (numpy, from the estimator's ``RandomState``), so it
depends only on the number of real samples: a training set padded to a bucket
(:mod:`skntk._buckets`) is shuffled and trained exactly as the unpadded one, and the
compiled epoch depends only on the bucket, not on the number of samples.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._devices import constrain_rows, padded_length
from ._losses import CROSS_ENTROPY
from ._network import forward, weight_penalty
from ._parameterization import scale_params


def n_batches_per_epoch(n_samples, batch_size):
    """Number of mini-batches that cover ``n_samples`` once (the last may be partial)."""
    batch_size = min(batch_size, n_samples)
    return -(-n_samples // batch_size)


def compiled_batch_size(batch_size, n_samples, n_rows):
    """Rows per mini-batch of the compiled epoch.

    ``batch_size`` when it is below ``n_samples``; otherwise the whole padded set,
    ``n_rows``: one batch holding every real sample (and zero-weight padding), which is
    the same update as a batch of exactly the ``n_samples`` real rows, so that every
    ``batch_size >= n_samples`` and every size of one bucket compile one shape.
    """
    return batch_size if batch_size < n_samples else n_rows


def epoch_order(rng, n_samples, n_rows, batch_size):
    """Row order of one epoch: a permutation of the real rows, then padding slots.

    Parameters
    ----------
    rng : numpy.random.RandomState
        Draws the permutation (``rng.permutation(n_samples)``: independent of the
        padding).
    n_samples : int
        Real rows, the first ``n_samples`` of the (padded) training arrays.
    n_rows : int
        Rows of the padded training arrays, ``>= n_samples``.
    batch_size : int
        Rows per batch of the compiled epoch (:func:`compiled_batch_size`).

    Returns
    -------
    order : ndarray of shape (n_batches_per_epoch(n_rows, batch_size) * batch_size,), int32
        The permutation, then zeros (slots of weight zero).
    """
    order = np.zeros(n_batches_per_epoch(n_rows, batch_size) * batch_size, np.int32)
    order[:n_samples] = rng.permutation(n_samples)
    return order


class Optimizer(NamedTuple):
    """The SGD phase's optimiser (hashable: a static argument of ``jax.jit``), with the
    names and meanings of scikit-learn's ``MLPClassifier``.

    ``solver``: ``"sgd"`` (``optax.sgd``, with ``momentum`` and Nesterov's momentum
    when ``nesterovs_momentum``) or ``"adam"`` (``optax.adam`` with its defaults, those
    of ``MLPClassifier``: ``beta_1=0.9``, ``beta_2=0.999``, ``epsilon=1e-8``);
    ``alpha``: L2 penalty, ``alpha / (2 n_b) sum_l ||W_l||^2`` added to the mean loss
    of a batch of total weight ``n_b`` (``MLPClassifier``'s penalty, divided by the
    sample size; biases are not penalised).
    """

    solver: str = "sgd"
    momentum: float = 0.0
    nesterovs_momentum: bool = True
    alpha: float = 0.0

    def transformation(self, learning_rate):
        """The ``optax.GradientTransformation`` with step ``learning_rate`` (traced)."""
        if self.solver == "adam":
            return optax.adam(learning_rate)
        return optax.sgd(learning_rate, momentum=self.momentum or None,
                         nesterov=bool(self.momentum) and self.nesterovs_momentum)

    def init(self, params):
        """The optimiser state of ``params`` (zeros; independent of the step)."""
        return self.transformation(0.0).init(params)


PLAIN_SGD = Optimizer()
"""Constant-step SGD without momentum or penalty: ``theta -= eta D grad``."""


def _weighted_batch_loss(params, X, Y, weights, loss, network, alpha=0.0):
    per_sample = loss.per_sample(forward(network, params, X), Y)
    total = jnp.sum(weights)
    value = jnp.sum(weights * per_sample) / total
    if alpha:
        value = value + alpha / (2 * total) * weight_penalty(network, params)
    return value


@partial(jax.jit, static_argnames=("batch_size", "mesh", "layer_scales", "loss"))
def sgd_epoch(params, X, Y, order, n_samples, learning_rate, batch_size, mesh=None,
              layer_scales=None, loss=CROSS_ENTROPY, weights=None):
    """One shuffled pass of plain mini-batch SGD on the mean of a loss:
    :func:`optimizer_epoch` with :data:`PLAIN_SGD`, returning the parameters only."""
    return optimizer_epoch(params, PLAIN_SGD.init(params), X, Y, order, n_samples,
                           learning_rate, batch_size, mesh, layer_scales, loss, weights,
                           PLAIN_SGD)[0]


@partial(jax.jit, static_argnames=("batch_size", "mesh", "layer_scales", "loss", "optimizer"))
def optimizer_epoch(params, opt_state, X, Y, order, n_samples, learning_rate, batch_size,
                    mesh=None, layer_scales=None, loss=CROSS_ENTROPY, weights=None,
                    optimizer=PLAIN_SGD):
    """One shuffled pass of mini-batch training on the (weighted) mean of a loss.

    Every real sample is used exactly once: slot ``i`` of ``order`` belongs to batch
    ``i // batch_size``, the slots past ``n_samples`` get weight zero, so the last,
    partial batch is a mean over its real samples only, and batches made only of
    padding slots are not run at all (the loop stops after
    ``ceil(n_samples / batch_size)`` batches).

    Parameters
    ----------
    params : list of (W, b)
        Network parameters (jax arrays).
    opt_state : optax state
        The optimiser's state (:meth:`Optimizer.init`), carried from epoch to epoch.
    X : jax array of shape (n_rows, n_features)
    Y : jax array of shape (n_rows, n_outputs)
        Encoded targets of ``loss`` (one-hot classes for the cross-entropy, target
        values for the squared error). Rows past ``n_samples`` (padding) are never
        weighted.
    order : array of shape (n_slots,), int32
        Row indices in the order of this epoch (:func:`epoch_order`), ``n_slots`` a
        multiple of ``batch_size``.
    n_samples : int
        Number of real samples; traced, so that every size of one bucket shares the
        compiled epoch.
    learning_rate : float
        Step size of each update; traced.
    batch_size : int
        Static; rows per batch (:func:`compiled_batch_size`).
    mesh : jax.sharding.Mesh or None, default=None
        Static. With a mesh, each mini-batch is padded (weight 0) to a multiple of the
        number of devices and split over them: data-parallel SGD. ``X`` and ``Y`` are
        then expected replicated on every device.
    layer_scales : tuple of (float, float) or None, default=None
        Static. The per-layer scales ``D`` of the parameterisation and the network's
        activation (:func:`skntk._parameterization.layer_scales`): the optimiser receives
        the gradient times ``D`` (for plain SGD, ``theta -= learning_rate * D * grad``,
        which is SGD on the trained coordinates ``(omega, beta)`` of the NTK
        parameterisation, written in ``(W, b)``). ``None``: the standard
        parameterisation, ``D = 1``. A model (:mod:`skntk._network`) in its place:
        its own forward pass, ``D = 1``.
    loss : skntk._losses.Loss, default=CROSS_ENTROPY
        Static. The loss whose mean over each batch is descended.
    weights : jax array of shape (n_rows,) or None, default=None
        Sample weights of the rows of ``X``: each batch descends
        ``sum_i w_i ell_i / sum_i w_i`` over its rows (``None``: weights 1).
    optimizer : Optimizer, default=PLAIN_SGD
        Static. The update rule (optax) and the L2 penalty.

    Returns
    -------
    params : list of (W, b)
        Parameters after ``ceil(n_samples / batch_size)`` updates.
    opt_state : optax state
        The optimiser's state after them.
    """
    n_slots = order.shape[0]
    n_batch_slots = n_slots // batch_size
    order = jnp.asarray(order)
    slot_weights = (jnp.arange(n_slots) < n_samples).astype(X.dtype)
    if weights is not None:
        slot_weights = slot_weights * weights[order]
    order = order.reshape(n_batch_slots, batch_size)
    slot_weights = slot_weights.reshape(n_batch_slots, batch_size)
    split = padded_length(batch_size, mesh) - batch_size
    if split:
        order = jnp.pad(order, ((0, 0), (0, split)))
        slot_weights = jnp.pad(slot_weights, ((0, 0), (0, split)))
    grad_fn = jax.grad(_weighted_batch_loss)
    transformation = optimizer.transformation(learning_rate)

    def step(i, carry):
        params, opt_state = carry
        idx, w = order[i], slot_weights[i]
        Xb, Yb, w = (constrain_rows(a, mesh) for a in (X[idx], Y[idx], w))
        grads = scale_params(grad_fn(params, Xb, Yb, w, loss, layer_scales,
                                     optimizer.alpha), layer_scales)
        updates, opt_state = transformation.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    n_batches = (n_samples + batch_size - 1) // batch_size
    return jax.lax.fori_loop(0, n_batches, step, (params, opt_state))
