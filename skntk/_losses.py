"""Losses of the estimators: what a classifier and a regressor differ in while training.

A :class:`Loss` gathers pure functions of the network's outputs ``f`` (n, C) and the
encoded targets ``Y`` (n, C): one-hot classes for the cross-entropy, the target values
for the squared error. Every training step, phase and metric takes a ``Loss`` as a
static argument of its compiled function, so the compiled programs are shared by every
estimator with the same loss. :data:`LOSSES` is the registry.

The loss of a sample is ``ell(f, y)``; the training loss is its (weighted) mean over the
samples, ``sum_i w_i ell(f_i, y_i) / sum_i w_i`` (weights 1 for real samples, 0 for the
padding rows of a bucket, :mod:`skntk._buckets`).

- ``"cross_entropy"``: ``ell = -sum_c y_c log softmax(f)_c``; gradient in ``f``
  ``softmax(f) - y``; Hessian ``diag(p) - p p^T <= I / 2`` (Boehning, "Multinomial
  logistic regression algorithm", Ann. Inst. Statist. Math. 1992); score: accuracy.
- ``"squared_error"``: ``ell = (1/2) sum_c (f_c - y_c)^2`` (for one output the loss of
  scikit-learn's ``MLPRegressor``); gradient ``f - y``; Hessian ``I``; score: the
  coefficient of determination R^2 of each output, averaged over the outputs
  (``sklearn.metrics.r2_score``, ``multioutput="uniform_average"``, ``force_finite``).
"""

import math
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Loss(NamedTuple):
    """A training loss and its score (hashable: a static argument of ``jax.jit``).

    Fields
    ------
    name : str
        Key in :data:`LOSSES`.
    per_sample : callable ``(f, Y) -> (n,)``
        ``ell(f_i, y_i)`` per sample.
    output_gradient : callable ``(f, Y) -> (n, C)``
        ``d ell / d f`` per sample.
    line_derivatives : callable ``(f, u, Y, scale) -> (first, second)``
        First and second derivative in ``alpha`` of ``sum_i scale_i ell(f_i + alpha u_i,
        y_i)`` at ``alpha = 0``, ``scale`` (n,) the weights over their sum: the exact
        line search of L-BFGS (:mod:`skntk._linearized`).
    curvature : float
        Upper bound of the Hessian of ``ell`` in ``f`` (``1/2`` or 1): the smoothness
        constant that sets the automatic NTK step, ``eta = 1 / (curvature
        lambda_max(Theta) / N)``.
    score : callable ``(f, Y, weights) -> scalar``
        Higher is better; ``weights`` (n,) or ``None``.
    score_name : str
        Suffix of the score columns of ``history_`` (``train_<score_name>``,
        ``val_<score_name>``).
    description : str
        The loss in words, for axis labels and messages.
    scaling_hint : str
        What else to scale when training diverges (appended to the error's advice;
        empty where scaling ``X`` is all there is).
    score_standard_error : callable ``(score, n) -> float``
        Standard error of a score measured on ``n`` samples, from the score itself:
        the tolerance of the NTK phase's early stopping (:mod:`skntk._stopping`).
    """

    name: str
    per_sample: Callable
    output_gradient: Callable
    line_derivatives: Callable
    curvature: float
    score: Callable
    score_name: str
    description: str
    scaling_hint: str = ""
    score_standard_error: Callable = None


def weighted_mean(values, weights=None):
    """Mean of ``values`` (n,), or with ``weights`` (n,) ``sum(w v) / sum(w)``."""
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(weights * values) / jnp.sum(weights)


# ------------------------------------------------------------------- cross-entropy

def cross_entropy_per_sample(f, Y):
    """``-sum_c Y_c log softmax(f)_c``, shape (n,)."""
    return -jnp.sum(Y * jax.nn.log_softmax(f, axis=-1), axis=-1)


def _cross_entropy_gradient(f, Y):
    return jax.nn.softmax(f) - Y


def _cross_entropy_line(f, u, Y, scale):
    p = jax.nn.softmax(f)
    first = jnp.sum(scale[:, None] * (p - Y) * u)
    pu = jnp.sum(p * u, axis=1, keepdims=True)
    second = jnp.sum(scale[:, None] * p * (u - pu) ** 2)
    return first, second


def accuracy(f, Y, weights=None):
    """Share of samples whose largest output is the target class (one-hot ``Y``)."""
    correct = (jnp.argmax(f, axis=-1) == jnp.argmax(Y, axis=-1)).astype(f.dtype)
    return weighted_mean(correct, weights)


# ------------------------------------------------------------------- squared error

def squared_error_per_sample(f, Y):
    """``(1/2) sum_c (f_c - Y_c)^2``, shape (n,)."""
    return 0.5 * jnp.sum((f - Y) ** 2, axis=-1)


def _squared_error_gradient(f, Y):
    return f - Y


def _squared_error_line(f, u, Y, scale):
    first = jnp.sum(scale[:, None] * (f - Y) * u)
    second = jnp.sum(scale[:, None] * u * u)
    return first, second


def r2_score(f, Y, weights=None):
    """Coefficient of determination of each output column, averaged over the columns.

    ``R^2_c = 1 - sum_i w_i (Y_ic - f_ic)^2 / sum_i w_i (Y_ic - Ybar_c)^2`` with
    ``Ybar_c`` the weighted mean; a constant column scores 1 when predicted exactly and
    0 otherwise (``sklearn.metrics.r2_score`` with ``force_finite=True``).
    """
    w = jnp.ones(Y.shape[0], Y.dtype) if weights is None else weights
    w = w[:, None]
    mean = jnp.sum(w * Y, axis=0) / jnp.sum(w)
    residual = jnp.sum(w * (Y - f) ** 2, axis=0)
    total = jnp.sum(w * (Y - mean) ** 2, axis=0)
    safe = jnp.where(total > 0, total, 1.0)
    per_output = jnp.where(total > 0, 1.0 - residual / safe,
                           jnp.where(residual == 0, 1.0, 0.0))
    return jnp.mean(per_output)


def accuracy_standard_error(score, n):
    """``sqrt(p (1 - p) / n)``, the binomial standard error of an accuracy ``p``."""
    p = min(max(score, 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n)


def r2_standard_error(score, n):
    """``(1 - R^2) sqrt(2 / n)``: with Gaussian residuals the mean squared error over
    ``n`` samples has relative standard error ``sqrt(2 / n)``, and ``1 - R^2`` is
    proportional to it."""
    return max(1.0 - score, 0.0) * math.sqrt(2.0 / n)


CROSS_ENTROPY = Loss("cross_entropy", cross_entropy_per_sample, _cross_entropy_gradient,
                     _cross_entropy_line, 0.5, accuracy, "accuracy", "mean cross-entropy",
                     score_standard_error=accuracy_standard_error)
SQUARED_ERROR = Loss("squared_error", squared_error_per_sample, _squared_error_gradient,
                     _squared_error_line, 1.0, r2_score, "r2",
                     "half the mean squared error",
                     "; targets of a large scale diverge too: keep normalize_y=True "
                     "(the default), which standardises them", r2_standard_error)

LOSSES = {loss.name: loss for loss in (CROSS_ENTROPY, SQUARED_ERROR)}
"""The registry: a new loss is a :class:`Loss` and an entry here."""


def mean_loss(loss, f, Y, weights=None):
    """The (weighted) mean loss over the samples, a scalar."""
    return weighted_mean(loss.per_sample(f, Y), weights)


@partial(jax.jit, static_argnums=0)
def loss_and_score(loss, f, Y, weights=None):
    """Mean loss and score of outputs ``f`` against ``Y``, jitted per loss; ``weights``
    (n,), optional: 0 for padding rows, which then count in neither (padding rows must
    have finite outputs)."""
    return mean_loss(loss, f, Y, weights), loss.score(f, Y, weights)
