"""The network linearised at ``theta*``: cached products with its Jacobian, the
automatic NTK step size, and an L-BFGS solver for the linearised loss (the
cross-entropy or the squared error, :mod:`skntk._losses`).

With ``h_0 = x``, ``z_l = h_{l-1} W_l + b_l``, ``h_l = phi(z_l)`` and ``f = z_L``,
the Jacobian ``J = df/dtheta`` at ``theta*`` acts on a parameter direction
``(dW_l, db_l)`` by the forward recursion ``dz_l = dh_{l-1} W_l + h_{l-1} dW_l + db_l``,
``dh_l = phi'(z_l) * dz_l`` (a Jacobian-vector product), and its transpose on an
output cotangent ``g_L = r`` by ``dW_l = h_{l-1}^T g_l``, ``db_l = sum_i g_l``,
``g_{l-1} = (g_l W_l^T) * phi'(z_{l-1})`` (a vector-Jacobian product). Both need only
the activations ``h_l`` at ``theta*`` and, but for ReLU (whose ``phi'(z_l)`` is
``1[h_l > 0]``), the derivatives ``phi'(z_l)``, which :func:`linearization` computes
once per phase (the forward pass of the kernel engine,
:func:`skntk._kernel_engine.forward_layers`), so no step recomputes the forward pass
at ``theta*`` and no per-sample Jacobian is ever formed.

The linearised model ``f_lin(theta) = f(theta*) + J (theta - theta*)`` is linear in
``theta``, so its mean loss (cross-entropy or squared error), plus an optional ridge
``(lambda / 2) ||theta - theta*||^2``, is convex (Lee et al., NeurIPS 2019, eq. (5)-(8)
for the model). :func:`lbfgs_step` minimises it by L-BFGS (Nocedal, "Updating
quasi-Newton matrices with limited storage", Math. Comp. 1980; Nocedal and Wright,
"Numerical Optimization", 2006, Algorithm 7.4) with an exact line search: along a
direction ``d`` the logits move as ``f + alpha J d``, so one Jacobian-vector product
gives the whole line and the search costs no further pass over the network. One
iteration is one Jacobian-vector and one vector-Jacobian product: about one SGD epoch.

Parameterisation: in the NTK parameterisation (:mod:`skntk._parameterization`) the
trained coordinates are ``omega = D^{-1/2} theta``, with ``D`` the per-layer scales.
The linearised model in them is ``f(theta*) + J D^{1/2} (omega - omega*)``, its
gradient ``D^{1/2} J^T r`` and its ridge ``(lambda / 2) ||omega - omega*||^2``; the
NTK is ``J D J^T``. :class:`Linearization` carries ``D`` (``scales``), and the
L-BFGS state (``delta``, its gradient and its curvature pairs) lives in ``omega``;
:func:`delta_to_params` maps it back to ``theta = theta* + D^{1/2} delta``. With the
standard parameterisation ``scales`` is ``None`` and ``omega = theta``.

A model (:mod:`skntk._network`) has no layer-wise cache: its :class:`Linearization`
holds the model in ``scales`` and its inputs as the only "activation", and the two
products are ``jax.jvp`` and ``jax.vjp`` of its forward pass at ``theta*``.
"""

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.sparse.linalg import LinearOperator, eigsh

from ._activations import DEFAULT_ACTIVATION, activation_of
from ._kernel_engine import forward_layers
from ._losses import CROSS_ENTROPY, loss_and_score, mean_loss
from ._network import is_mlp
from ._parameterization import LayerScales, scale_params

LBFGS_MEMORY = 10
"""Curvature pairs kept by L-BFGS (Nocedal and Wright recommend 3 to 20)."""

_LINE_SEARCH_STEPS = 6
"""Safeguarded Newton steps of the exact line search."""


class Linearization(NamedTuple):
    """The network at ``theta*`` on fixed inputs.

    ``params_star``: list of ``(W, b)``; ``activations``: ``[h_0 = X, h_1, ...,
    h_{L-1}]``, each of shape (N, fan_in of the next layer); ``logits``: (N, C)
    ``f(X; theta*)``; ``scales``: the per-layer ``(s_W, s_b)`` of the
    parameterisation and the activation (:class:`skntk._parameterization.LayerScales`;
    0-d arrays once through ``jit``), ``None`` for the standard one of the ReLU
    network, or the model (:mod:`skntk._network`), whose ``activations`` are
    ``[X]``; ``derivatives``: ``[phi'(z_1), ..., phi'(z_{L-1})]``, ``None`` for ReLU
    and for a model."""

    params_star: Any
    activations: Any
    logits: Any
    scales: Any = None
    derivatives: Any = None


@partial(jax.jit, static_argnames="layer_scales")
def linearization(params_star, X, layer_scales=None):
    """The activations of the network at ``theta*`` on ``X`` (one forward pass);
    ``layer_scales``: those of :func:`skntk._parameterization.layer_scales`, kept in
    the result."""
    if not is_mlp(layer_scales):
        return Linearization(params_star, [X], layer_scales.apply(params_star, X),
                             layer_scales)
    activation = activation_of(layer_scales)
    activations, derivatives = forward_layers(params_star, X, activation)
    W, b = params_star[-1]
    return Linearization(params_star, activations, activations[-1] @ W + b, layer_scales,
                         None if activation == DEFAULT_ACTIVATION else derivatives)


def _times_derivative(lin, hidden_layer, g):
    """``g * phi'(z)`` of hidden layer ``hidden_layer`` (0-based)."""
    if lin.derivatives is None:
        return jnp.where(lin.activations[hidden_layer + 1] > 0, g, 0.0)
    return g * lin.derivatives[hidden_layer]


def jacobian_vector_product(lin, direction):
    """``J(theta*) d`` for a parameter direction ``d`` (list of ``(dW, db)``); (N, C)."""
    if not is_mlp(lin.scales):
        return jax.jvp(partial(_model_outputs, lin), (lin.params_star,), (direction,))[1]
    dh = None
    for layer, ((W, _), (dW, db), h) in enumerate(zip(lin.params_star, direction,
                                                       lin.activations)):
        dz = h @ dW + db
        if dh is not None:
            dz = dz + dh @ W
        if layer + 1 < len(lin.params_star):
            dh = _times_derivative(lin, layer, dz)
    return dz


def vector_jacobian_product(lin, cotangent):
    """``J(theta*)^T r`` for output cotangents ``r`` of shape (N, C), as a parameter list."""
    if not is_mlp(lin.scales):
        return jax.vjp(partial(_model_outputs, lin), lin.params_star)[1](cotangent)[0]
    grads = []
    g = cotangent
    for layer in range(len(lin.params_star) - 1, -1, -1):
        h = lin.activations[layer]
        grads.append((h.T @ g, jnp.sum(g, axis=0)))
        if layer:
            W = lin.params_star[layer][0]
            g = _times_derivative(lin, layer - 1, g @ W.T)
    return grads[::-1]


def _model_outputs(lin, params):
    return lin.scales.apply(params, lin.activations[0])


def omega_to_network(lin, flat):
    """A flat direction in the trained coordinates as a ``(W, b)`` direction:
    ``D^{1/2} d``, unravelled like ``lin.params_star``."""
    _, unravel = ravel_pytree(lin.params_star)
    return scale_params(unravel(flat), lin.scales, 0.5)


def network_to_omega(lin, grads):
    """A gradient in ``(W, b)`` (a parameter list) as the flat gradient in the trained
    coordinates, ``D^{1/2} g``."""
    flat, _ = ravel_pytree(scale_params(grads, lin.scales, 0.5))
    return flat


# --------------------------------------------------------------------------------------
# Automatic step size
# --------------------------------------------------------------------------------------

@jax.jit
def _ntk_matvec(lin, V):
    """``Theta V``: the per-logit NTK ``J D J^T`` on the linearisation's inputs applied
    to (m, C)."""
    return jacobian_vector_product(lin, scale_params(vector_jacobian_product(lin, V),
                                                     lin.scales))


def ntk_max_eigenvalue(params_star, X, *, tol=1e-3, random_state=0, layer_scales=None):
    """Largest eigenvalue of the per-logit empirical NTK ``Theta = J J^T`` on ``X``
    (``J D J^T`` with ``layer_scales``).

    ``Theta`` is the (m C) x (m C) kernel ``Theta[(i, c), (j, c')] = <J_c(x_i),
    J_c'(x_j)>``; it is never formed: Lanczos iterations (``scipy.sparse.linalg.eigsh``,
    ARPACK) apply it through one vector-Jacobian and one Jacobian-vector product each.

    Parameters
    ----------
    params_star : list of (W, b)
        Network parameters (jax or numpy, float32).
    X : array of shape (m, n_features)
        Inputs, float32; in the estimator, the monitor subset of the training set.
    tol : float, default=1e-3
        Relative accuracy of the eigenvalue.
    random_state : int, default=0
        Seed of the Lanczos start vector.
    layer_scales : tuple of (float, float) or None, default=None
        The per-layer scales ``D`` of the parameterisation; ``None``: standard.

    Returns
    -------
    eigenvalue : float
        ``lambda_max(Theta)``, >= 0.
    """
    lin = linearization(params_star, jnp.asarray(X), layer_scales)
    m, n_classes = lin.logits.shape
    size = m * n_classes

    def matvec(v):
        V = jnp.asarray(np.asarray(v, dtype=np.float32).reshape(m, n_classes))
        return np.asarray(_ntk_matvec(lin, V), dtype=np.float64).ravel()

    if size <= 64:
        dense = np.stack([matvec(e) for e in np.eye(size)], axis=1)
        return float(max(np.linalg.eigvalsh((dense + dense.T) / 2)[-1], 0.0))
    start = np.random.RandomState(random_state).standard_normal(size)
    operator = LinearOperator((size, size), matvec=matvec, dtype=np.float64)
    value = eigsh(operator, k=1, which="LA", tol=tol, v0=start, return_eigenvectors=False)
    return float(max(value[0], 0.0))


def auto_ntk_learning_rate(params_star, X_subset, layer_scales=None, curvature=0.5):
    """Step ``eta = m / (curvature lambda_max(Theta_m))`` of full-batch descent on the
    mean loss of the linearised network: ``2 m / lambda_max(Theta_m)`` for the
    cross-entropy (``curvature = 1/2``, the default), ``m / lambda_max(Theta_m)`` for
    the squared error (``curvature = 1``, :attr:`skntk._losses.Loss.curvature`).

    The Hessian of the mean cross-entropy in ``theta`` is ``(1/N) J^T H J`` with ``H``
    block-diagonal, ``H_i = diag(p_i) - p_i p_i^T <= I / 2`` (Boehning, "Multinomial
    logistic regression algorithm", Ann. Inst. Statist. Math. 1992), so its largest
    eigenvalue is at most ``L = lambda_max(Theta_N) / (2 N)``, and a step ``1 / L``
    decreases the loss of the linearised model at every step (Nesterov, "Introductory
    lectures on convex optimization", 2004, Theorem 2.1.14). ``lambda_max(Theta_N) / N``
    is estimated on ``m`` training samples drawn at random, as
    ``lambda_max(Theta_m) / m`` (the top eigenvalue of the kernel's integral operator).
    With ``layer_scales`` (the NTK parameterisation) ``Theta = J D J^T``, the Gauss-Newton
    matrix in the trained coordinates, and ``eta`` is their step. For the squared error
    the Hessian is ``(1/N) J^T J`` itself, so ``L = lambda_max(Theta_N) / N``. Returns
    1.0 when the kernel is zero.
    """
    m = X_subset.shape[0]
    eigenvalue = ntk_max_eigenvalue(params_star, X_subset, layer_scales=layer_scales)
    return m / (curvature * eigenvalue) if eigenvalue > 0 else 1.0


# --------------------------------------------------------------------------------------
# L-BFGS on the linearised loss
# --------------------------------------------------------------------------------------

class LBFGSState(NamedTuple):
    """State of L-BFGS on the linearised model (jax arrays).

    ``delta``: (P,) ``omega - omega*`` in the trained coordinates (``theta - theta*``
    for the standard parameterisation), flattened; ``logits``: (N, C) ``f_lin`` on the
    training inputs; ``grad``: (P,) gradient of the objective (mean loss plus
    ridge) at ``delta``; ``loss``: scalar, the mean loss alone;
    ``s``, ``y``: (M, P) the last ``M`` steps and gradient changes (a ring buffer,
    zero where unused); ``rho``: (M,) ``1 / <y, s>`` (0 where unused); ``count``:
    number of stored pairs so far; ``alpha``: the last line-search step."""

    delta: Any
    logits: Any
    grad: Any
    loss: Any
    s: Any
    y: Any
    rho: Any
    count: Any
    alpha: Any


def _residual(logits, Y, weights, loss):
    """Gradient of the weighted mean loss with respect to the outputs."""
    return loss.output_gradient(logits, Y) * (weights / jnp.sum(weights))[:, None]


def _flat_gradient(lin, logits, Y, weights, loss):
    """Gradient of the mean loss in the trained coordinates, flat (P,)."""
    return network_to_omega(lin, vector_jacobian_product(lin, _residual(logits, Y, weights,
                                                                          loss)))


@partial(jax.jit, static_argnames="loss")
def lbfgs_init(lin, Y, weights, loss=CROSS_ENTROPY):
    """L-BFGS state at ``theta = theta*`` (one vector-Jacobian product; the ridge's
    gradient is zero there); ``loss``: a :class:`skntk._losses.Loss` (static)."""
    flat, _ = ravel_pytree(lin.params_star)
    P, M = flat.shape[0], LBFGS_MEMORY
    grad = _flat_gradient(lin, lin.logits, Y, weights, loss)
    # Two arrays, not one twice: the epoch program donates (updates in place) each.
    return LBFGSState(jnp.zeros_like(flat), lin.logits, grad,
                      mean_loss(loss, lin.logits, Y, weights),
                      jnp.zeros((M, P), flat.dtype), jnp.zeros((M, P), flat.dtype),
                      jnp.zeros(M, flat.dtype), jnp.zeros((), jnp.int32),
                      jnp.asarray(1.0, flat.dtype))


def _two_loop_direction(state):
    """``-H g`` by the L-BFGS two-loop recursion over the stored pairs; before the
    first pair, ``H = I / ||g||`` (a unit step, which the line search rescales)."""
    M = state.s.shape[0]

    def newest_first(i, carry):
        q, a = carry
        j = (state.count - 1 - i) % M
        a_j = state.rho[j] * jnp.dot(state.s[j], q)
        return q - a_j * state.y[j], a.at[j].set(a_j)

    q, a = jax.lax.fori_loop(0, M, newest_first,
                             (state.grad, jnp.zeros(M, state.grad.dtype)))
    last = (state.count - 1) % M
    yy = jnp.dot(state.y[last], state.y[last])
    g_norm = jnp.sqrt(jnp.dot(state.grad, state.grad))
    gamma = jnp.where((state.count > 0) & (yy > 0),
                      jnp.dot(state.s[last], state.y[last]) / jnp.where(yy > 0, yy, 1.0),
                      1.0 / jnp.where(g_norm > 0, g_norm, 1.0))
    r = gamma * q

    def oldest_first(i, r):
        j = (state.count - M + i) % M
        b = state.rho[j] * jnp.dot(state.y[j], r)
        return r + state.s[j] * (a[j] - b)

    return -jax.lax.fori_loop(0, M, oldest_first, r)


def _line_derivatives(logits, u, Y, weights, ridge, delta_dot_d, d_dot_d, alpha, loss):
    """First and second derivative in ``alpha`` of the objective at ``delta + alpha d``,
    whose outputs are ``f + alpha u``: the loss's terms
    (:attr:`skntk._losses.Loss.line_derivatives`; for the cross-entropy
    ``sum_i w_i (p_i - y_i) . u_i / W`` and ``sum_i w_i u_i^T (diag(p_i) - p_i p_i^T)
    u_i / W``) plus the ridge's."""
    first, second = loss.line_derivatives(logits + alpha * u, u, Y,
                                          weights / jnp.sum(weights))
    return (first + ridge * (delta_dot_d + alpha * d_dot_d), second + ridge * d_dot_d)


def _exact_line_search(logits, u, Y, weights, ridge, delta_dot_d, d_dot_d, loss):
    """The minimiser over ``alpha >= 0`` of the (convex) objective along the line, by
    safeguarded Newton steps from ``alpha = 1`` (the natural quasi-Newton step): the
    bracket ``[lo, hi]`` of the minimiser shrinks with the sign of each derivative, and
    a Newton step that leaves it is replaced by doubling (while no upper end is known)
    or bisection. Each step costs one pass over the (N, C) outputs (a softmax for the
    cross-entropy) and no pass over the network; for the squared error the first
    Newton step is exact."""
    def newton(i, carry):
        lo, hi, alpha = carry
        first, second = _line_derivatives(logits, u, Y, weights, ridge, delta_dot_d,
                                          d_dot_d, alpha, loss)
        lo, hi = jnp.where(first < 0, alpha, lo), jnp.where(first < 0, hi, alpha)
        step = alpha - first / jnp.where(second > 0, second, 1.0)
        # Inclusive: once converged to rounding, the Newton step lands on an end of
        # the bracket and must stay there rather than bisect away.
        inside = (second > 0) & (step >= lo) & (step <= hi)
        fallback = jnp.where(jnp.isinf(hi), 2.0 * alpha, 0.5 * (lo + hi))
        return lo, hi, jnp.where(inside, step, fallback)

    zero = jnp.zeros((), logits.dtype)
    _, _, alpha = jax.lax.fori_loop(0, _LINE_SEARCH_STEPS, newton,
                                    (zero, zero + jnp.inf, zero + 1.0), unroll=True)
    return alpha


def _lbfgs_step(state, lin, Y, weights, ridge, loss):
    direction = _two_loop_direction(state)
    # Not a descent direction (rounding): fall back to steepest descent.
    g_norm = jnp.sqrt(jnp.dot(state.grad, state.grad))
    direction = jnp.where(jnp.dot(direction, state.grad) < 0, direction,
                          -state.grad / jnp.where(g_norm > 0, g_norm, 1.0))
    u = jacobian_vector_product(lin, omega_to_network(lin, direction))
    alpha = _exact_line_search(state.logits, u, Y, weights, ridge,
                               jnp.dot(state.delta, direction), jnp.dot(direction, direction),
                               loss)
    logits = state.logits + alpha * u
    s = alpha * direction
    grad = _flat_gradient(lin, logits, Y, weights, loss) + ridge * (state.delta + s)
    y = grad - state.grad
    sy = jnp.dot(s, y)
    # A pair without positive curvature (rounding) would spoil the inverse-Hessian
    # estimate: it is not stored, and the oldest pair stays.
    keep = sy > 1e-10 * jnp.sqrt(jnp.dot(s, s) * jnp.dot(y, y))
    slot = state.count % LBFGS_MEMORY
    return LBFGSState(
        state.delta + s, logits, grad, mean_loss(loss, logits, Y, weights),
        state.s.at[slot].set(jnp.where(keep, s, state.s[slot])),
        state.y.at[slot].set(jnp.where(keep, y, state.y[slot])),
        state.rho.at[slot].set(jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0),
                                         state.rho[slot])),
        state.count + keep.astype(state.count.dtype), alpha)


@partial(jax.jit, static_argnames="loss")
def lbfgs_step(state, lin, Y, weights, ridge=0.0, loss=CROSS_ENTROPY):
    """One L-BFGS iteration on ``mean loss(f_lin) + (ridge / 2) ||omega - omega*||^2``
    (``omega`` the trained coordinates, ``theta`` in the standard parameterisation):
    a direction from the stored pairs, one Jacobian-vector product for the line
    ``f + alpha J d``, an exact line search along it, and one vector-Jacobian product
    for the new gradient. ``loss``: a :class:`skntk._losses.Loss` (static)."""
    return _lbfgs_step(state, lin, Y, weights, ridge, loss)


def lbfgs_epoch_and_metrics(state, lin, Y, weights, ridge, val_lin, Y_val, weights_val,
                            loss=CROSS_ENTROPY):
    """One L-BFGS iteration (:func:`lbfgs_step`) and what the training loop checks and
    records after it, in one compiled program with one transfer to the host.

    ``val_lin``: the linearisation at ``theta*`` on the validation inputs, or ``None``.
    Returns the new state and ``[1 if the step and outputs are finite else 0,
    train_loss, train_score, val_loss, val_score]`` (NaN without validation
    data); the training logits are the solver's own, the validation logits one
    Jacobian-vector product.

    The stored pairs ``state.s`` and ``state.y`` (two (M, P) arrays) are donated to the
    new state, which updates one row of each in place: after the call they are no
    longer valid in ``state`` (its other fields are). Copying them instead took a third
    of an iteration on the CPU (426 training samples, M = 10).
    """
    return _lbfgs_epoch_and_metrics(state.s, state.y, state._replace(s=None, y=None), lin, Y,
                                    weights, ridge, val_lin, Y_val, weights_val, loss=loss)


@partial(jax.jit, static_argnames="loss", donate_argnums=(0, 1))
def _lbfgs_epoch_and_metrics(s, y, state, lin, Y, weights, ridge, val_lin, Y_val,
                             weights_val, loss):
    state = _lbfgs_step(state._replace(s=s, y=y), lin, Y, weights, ridge, loss)
    finite = jnp.isfinite(jnp.sum(state.delta * 0) + jnp.sum(state.logits * 0))
    values = [finite.astype(state.logits.dtype), *loss_and_score(loss, state.logits, Y,
                                                                 weights)]
    if val_lin is None:
        values += [jnp.nan, jnp.nan]
    else:
        val_logits = val_lin.logits + jacobian_vector_product(
            val_lin, omega_to_network(lin, state.delta))
        values += list(loss_and_score(loss, val_logits, Y_val, weights_val))
    return state, jnp.stack([jnp.asarray(v, state.logits.dtype) for v in values])


@jax.jit
def delta_to_params(lin, delta):
    """``theta* + D^{1/2} delta`` as a parameter list (``theta* + delta`` for the
    standard parameterisation)."""
    if not isinstance(lin.scales, LayerScales):
        flat, unravel = ravel_pytree(lin.params_star)
        return unravel(flat + delta)
    return jax.tree_util.tree_map(jnp.add, lin.params_star, omega_to_network(lin, delta))
