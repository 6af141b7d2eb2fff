"""The closed-form kernel phase (``ntk_phase="kernel"``).

Gradient flow of the linearised network under the mean squared error on the encoded
targets (one-hot classes of a classifier, the target values of a regressor), with the
trace-approximated kernel ``K_bar = K / C`` over the ``C`` outputs at ``theta*``
(Lee et al., NeurIPS 2019, eq. (9)-(10)). One phase class,
:class:`KernelPhase`, of the interface :class:`skntk._phase_api.NTKPhase`; its state
holds a solver of the registry :data:`skntk._kernel_solvers.KERNEL_SOLVERS`
(``"dense"``: one eigendecomposition; ``"matrix_free"``: conjugate gradients at
``t = inf``, Lanczos at finite ``t``), chosen by ``kernel_solver`` and
:meth:`KernelPhase.resolve`.

Every solver ends with the dual coefficients ``A`` (the estimator's ``dual_coef_``) on
the training inputs (``X_fit_``), and the model is, whatever the solver::

    f_t(x) = f_0(x) + K_bar(x, X_fit_) A

(:func:`kernel_model_outputs`: the one prediction path). At ``t = inf`` the phase also
gives the posterior variance of the Gaussian process whose prior covariance is
``K_bar`` (:meth:`KernelPhase.predict_variance`; He, Lakshminarayanan and Teh, NeurIPS
2020, "Bayesian deep ensembles via the neural tangent kernel"), whose posterior mean
is the kernel regression (Lee et al. 2019, sec. 2.3).
"""

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from ._buckets import pad_rows
from ._kernel_budget import (VARIANCE_CROSS_KERNEL, check_kernel_phase_budget,
                             kernel_bar, prediction_block)
from ._kernel_solvers import kernel_solver
from ._matrix_free import cross_kernel_apply, kernel_diagonal
from ._mlp import params_to_numpy
from ._network import forward, network_sizes
from ._phase_api import NTKPhase, host_metrics


class KernelState(NamedTuple):
    """State of the kernel phase (numpy float64 unless noted).

    ``params_star``: ``theta*`` (jax); ``X``: training inputs (jax, float32); ``F0``:
    (N, C) offset ``f_0`` on them; ``solver``: the solver's state (a class of
    :data:`skntk._kernel_solvers.KERNEL_SOLVERS`, built at :meth:`KernelPhase.start`);
    ``coefficients``: (N, C) ``A`` at the current flow time; ``train_logits``: (N, C)
    ``f_t(X)``; ``F0_val``: (n_val, C) offset on the validation inputs, or ``None``;
    ``info``: the solver's record (``None`` for the dense solver); ``offset``:
    ``"network"`` or ``"zero"``; ``flow_time``: ``t`` of ``coefficients`` (0 before
    the first step); ``layer_scales``: the per-layer scales ``D`` of the
    parameterisation (the kernel is ``J D J^T``; ``None``: standard);
    ``sample_weight``: (N,) weights of the training rows, or ``None`` (1 each).
    """

    params_star: Any
    X: Any
    F0: Any
    solver: Any
    coefficients: Any
    train_logits: Any
    F0_val: Any = None
    info: Any = None
    offset: str = "network"
    flow_time: float = 0.0
    layer_scales: Any = None
    sample_weight: Any = None


def offset_outputs(params_star, X, offset, layer_scales=None):
    """``f_0`` of the kernel regression on ``X``, float64 (n, C): the network at
    ``theta*`` (``offset="network"``; ``layer_scales`` name its activation) or zero
    (``offset="zero"``)."""
    F = np.asarray(forward(layer_scales, params_star, X), dtype=np.float64)
    return np.zeros_like(F) if offset == "zero" else F


def kernel_model_outputs(params_star, X, X_fit, dual_coef, offset, layer_scales,
                         max_bytes=None):
    """The kernel phase's model, ``offset(X) + K_bar(X, X_fit) dual_coef``.

    Parameters
    ----------
    params_star : list of (W, b)
        ``theta*`` (jax arrays).
    X : array-like of shape (n, d)
        Inputs.
    X_fit : array-like of shape (N, d)
        Training inputs of the model.
    dual_coef : ndarray of shape (N, C), float64
        Dual coefficients ``A``.
    offset : {"network", "zero"}
        ``f_0``: the network at ``theta*``, or zero.
    layer_scales : tuple or None
        Per-layer scales ``D`` of the parameterisation (``K = J D J^T``).
    max_bytes : int, float or None, default=None
        ``max_kernel_bytes``: bounds the working memory
        (:func:`skntk._kernel_budget.prediction_block`).

    Returns
    -------
    outputs : ndarray of shape (n, C), float64
        The kernel is applied block by block without forming ``K_bar(X, X_fit)``
        (:func:`skntk._matrix_free.cross_kernel_apply`: float32 layer factors, sums in
        float64), so memory does not grow with ``N`` or ``n``. Non-finite values (a kernel that
        overflows) are passed on as ``inf``/``NaN`` for the caller to handle.
    """
    block = prediction_block(network_sizes(layer_scales, params_star, X.shape[1]),
                             X_fit.shape[0], max_bytes)
    update = cross_kernel_apply(params_star, X, jnp.asarray(X_fit), dual_coef,
                                dual_coef.shape[1], block_size=block,
                                layer_scales=layer_scales)
    with np.errstate(all="ignore"):
        return offset_outputs(params_star, X, offset, layer_scales) + update


def _weighted_flow_settings(settings, weights):
    """``settings`` with the step scaled by ``N / sum w``: the solvers' flow runs at
    ``t / N`` on ``N`` rows, weighted kernel regression at ``t / sum w``."""
    return settings._replace(learning_rate=settings.learning_rate * weights.size
                             / weights.sum())


class KernelPhase(NTKPhase):
    """``ntk_phase="kernel"``: closed-form gradient flow of the linearised network under
    the mean squared error on the encoded targets, with the trace-approximated kernel
    ``K_bar = K / C`` (Lee et al. 2019, eq. (9)-(10)), by the solver of
    ``settings.kernel_solver`` (:mod:`skntk._kernel_solvers`). Works on the real
    training rows only (its kernels and solvers are exact on them and sized to them
    anyway).
    """

    padded_rows = False
    auto_epochs = math.inf
    early_stopping = False
    # It minimises the squared error, so a classifier's cross-entropy may rise.
    lowers_training_loss = False
    diverging_part = "the kernel-flow coefficients"
    fitted_attributes = ("dual_coef_", "X_fit_", "kernel_offset_", "kernel_ridge_",
                         "kernel_flow_time_", "kernel_tol_", "kernel_max_iter_",
                         "max_kernel_bytes_", "kernel_sample_weight_")
    has_variance = True

    @classmethod
    def check_params(cls, ntk_solver, ntk_epochs):
        return None  # every epoch count, numpy.inf included (kernel regression)

    @classmethod
    def resolve(cls, config, layer_sizes, n_train, n_val):
        """The kernel solver: ``"matrix_free"`` as asked, or under ``"auto"`` exactly
        when the dense kernels would exceed ``max_kernel_bytes`` (which
        ``kernel_solver="dense"`` raises for, before training;
        :func:`skntk._kernel_budget.check_kernel_phase_budget`). Raises a
        ``ValueError`` first if the predictions' working memory exceeds it
        (:func:`skntk._kernel_budget.prediction_block`), whatever the solver."""
        prediction_block(layer_sizes, n_train, config.max_kernel_bytes)
        if config.kernel_solver == "matrix_free":
            return None, "matrix_free"
        try:
            check_kernel_phase_budget(layer_sizes, n_train, config.max_kernel_bytes,
                                      n_val=n_val)
        except ValueError:
            if config.kernel_solver == "dense":
                raise
            return None, "matrix_free"  # "auto": too large to form, so never formed
        return None, "dense"

    @classmethod
    def auto_learning_rate(cls, settings, step_for_curvature):
        """The step of gradient descent on the squared error (Hessian ``I`` in the
        outputs), whatever the estimator's loss; NaN at infinite flow time (kernel
        regression needs none)."""
        if math.isinf(settings.n_epochs):
            return math.nan
        return step_for_curvature(1.0)

    @staticmethod
    def epochs(settings):
        if math.isinf(settings.n_epochs):
            return [math.inf]
        return range(1, int(settings.n_epochs) + 1)

    @staticmethod
    def start(params_star, X, Y, settings, weights=None, val=None):
        """The solver of ``settings.kernel_solver`` built on the real rows ``X`` (N, d)
        and targets ``Y`` (N, C), and the offset on ``val.X`` when validation rows are
        given.

        With sample ``weights`` ``w`` (N,) the phase is weighted kernel regression:
        the flow of ``(1 / sum w) sum_i w_i (1/2) ||f_i - y_i||^2`` and, at ``t =
        inf``, the minimiser of ``sum_i w_i ||f_i - y_i||^2 + rho ||f - f_0||^2`` in
        the kernel's space, i.e. ``A = (W K_bar + rho I)^{-1} W R``. It is solved as
        the unweighted problem of the kernel ``S K_bar S`` (``S = diag(sqrt w)``),
        residual ``S R`` and flow times scaled by ``N / sum w``, with ``A = S B``
        (``B`` that problem's coefficients): the solvers are unchanged, and rows of
        integer weight give the fit of repeated rows.

        Raises
        ------
        ValueError
            For an unknown solver, and from the solver's ``build`` (memory budget,
            non-finite kernel or residual).
        """
        solver = kernel_solver(settings.kernel_solver)
        offset = settings.kernel_offset
        F0 = offset_outputs(params_star, X, offset, settings.layer_scales)
        X_val = None if val is None else val.X
        residual = np.asarray(Y, dtype=np.float64) - F0
        row_scale = None
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            row_scale = np.sqrt(weights)
            residual = residual * row_scale[:, None]
            settings = _weighted_flow_settings(settings, weights)
        state = solver.build(params_star, X, residual, settings, X_val=X_val,
                             row_scale=row_scale)
        F0_val = (None if val is None
                  else offset_outputs(params_star, X_val, offset, settings.layer_scales))
        return KernelState(params_star, X, F0, state, np.zeros_like(F0), F0, F0_val,
                           offset=offset, layer_scales=settings.layer_scales,
                           sample_weight=weights)

    @staticmethod
    def step(state, epoch, settings):
        # Kernel regression (epoch inf) needs no step size, which may be NaN then.
        t = math.inf if math.isinf(epoch) else settings.learning_rate * epoch
        if state.sample_weight is None:
            coefficients, train_update, info = state.solver.evaluate(t)
        else:
            weights = state.sample_weight
            # The flow at t / sum(w) is the solvers' flow at t_solver / N.
            t_solver = t if math.isinf(t) else t * weights.size / weights.sum()
            coefficients, train_update, info = state.solver.evaluate(t_solver)
            row_scale = np.sqrt(weights)[:, None]
            coefficients, train_update = coefficients * row_scale, train_update / row_scale
        return state._replace(coefficients=coefficients, train_logits=state.F0 + train_update,
                              info=info, flow_time=t)

    @classmethod
    def report(cls, state, train, val, settings):
        """Finiteness of the coefficients and training outputs, and the metrics of the
        estimator's loss (computed on the host) from the training outputs and the
        solver's validation outputs."""
        finite = (np.isfinite(state.coefficients).all()
                  and np.isfinite(state.train_logits).all())
        if not finite:
            return np.array([0.0] + [math.nan] * 4)
        val_outputs = None
        if val is not None:
            val_outputs = state.solver.validation_outputs(state.coefficients, state.F0_val)
        return np.array([1.0, *host_metrics(settings.loss, state.train_logits, train,
                                            val_outputs, val)])

    @staticmethod
    def iterations(state):
        """Krylov iterations behind the epoch's outputs (the largest over outputs); NaN
        for a solver without iterations."""
        if state.info is None:
            return math.nan
        return float(np.max(state.info.get("iterations", 0)))

    @staticmethod
    def solver_info(state):
        return state.info

    @staticmethod
    def outputs(state, X, layer_scales=None):
        """The model at the current flow time on ``X`` (:func:`kernel_model_outputs`;
        the state holds the layer scales)."""
        return kernel_model_outputs(state.params_star, X, state.X, state.coefficients,
                                    state.offset, state.layer_scales)

    @staticmethod
    def network(state):
        return params_to_numpy(state.params_star)

    @staticmethod
    def fitted_state(state, settings):
        """The model ``f(x) = offset(x) + K_bar(x, X_fit_) dual_coef_``:
        ``dual_coef_`` (N, C) float64, ``X_fit_`` (N, d) float32, ``kernel_offset_``,
        ``kernel_ridge_`` (``rho``), ``kernel_flow_time_`` (``t``), and the budget and
        solver settings that :meth:`predict_variance` uses (``max_kernel_bytes_``,
        ``kernel_tol_``, ``kernel_max_iter_``)."""
        return {"X_fit_": np.array(state.X), "dual_coef_": state.coefficients,
                "kernel_offset_": state.offset, "kernel_ridge_": float(settings.ridge),
                "kernel_flow_time_": float(state.flow_time),
                "kernel_tol_": float(settings.kernel_tol),
                "kernel_max_iter_": int(settings.kernel_max_iter),
                "max_kernel_bytes_": settings.max_kernel_bytes,
                "kernel_sample_weight_": state.sample_weight}

    @staticmethod
    def variance_defined(fitted):
        return math.isinf(fitted["kernel_flow_time_"])

    @staticmethod
    def predict_outputs(params_star, params, fitted, X):
        """``offset(X) + K_bar(X, X_fit_) dual_coef_`` (:func:`kernel_model_outputs`),
        the same for every solver."""
        return kernel_model_outputs(params_star, X, fitted["X_fit_"], fitted["dual_coef_"],
                                    fitted["kernel_offset_"], fitted["layer_scales"],
                                    fitted["max_kernel_bytes_"])

    @staticmethod
    def predict_variance(params_star, fitted, X, block_size):
        """Posterior variance of the NTK Gaussian process at ``t = inf``, per sample.

        ``var(x) = K_bar(x, x) - K_bar(x, X) (K_bar(X, X) + rho I)^+ K_bar(X, x)`` with
        ``X = fitted["X_fit_"]``, ``rho = fitted["kernel_ridge_"]`` and ``C`` the columns
        of ``fitted["dual_coef_"]``; the inverse by the fitted solver
        (``fitted["kernel_solver_"]``: a factor of the dense kernel, or conjugate
        gradients), the prior variance ``K_bar(x, x)`` from the layer factors
        (:func:`skntk._matrix_free.kernel_diagonal`) and the cross kernel, for
        ``block_size`` rows at a time (the last block zero-padded, so one shape
        compiles).

        Returns
        -------
        variance : ndarray of shape (n,), float64, clipped at 0 (rounding).

        Raises
        ------
        ValueError
            If a kernel exceeds the fitted ``max_kernel_bytes_``.
        """
        n_classes = fitted["dual_coef_"].shape[1]
        X_fit = jnp.asarray(fitted["X_fit_"])
        scales = fitted["layer_scales"]
        inverse = kernel_solver(fitted["kernel_solver_"]).training_inverse(params_star, fitted)
        X = np.asarray(X)
        n = X.shape[0]
        padded = pad_rows(X, -(-n // block_size) * block_size)
        variance = np.empty(n)
        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            rows = jnp.asarray(padded[start:start + block_size])
            prior = kernel_diagonal(params_star, rows, n_classes, block_size=block_size,
                                    layer_scales=scales)
            K_cross = kernel_bar(params_star, rows, X_fit, n_classes,
                                 fitted["max_kernel_bytes_"], VARIANCE_CROSS_KERNEL,
                                 copies=inverse.cross_copies, held_bytes=inverse.nbytes,
                                 held_what=inverse.description, layer_scales=scales)
            K_cross = K_cross[:stop - start]
            if fitted.get("kernel_sample_weight_") is not None:
                K_cross = K_cross * np.sqrt(fitted["kernel_sample_weight_"])[None, :]
            variance[start:stop] = prior[:stop - start] - inverse.quadratic(K_cross)
        return np.clip(variance, 0.0, None)
