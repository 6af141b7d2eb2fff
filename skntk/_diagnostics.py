"""Kernel diagnostics per SGD epoch, on the monitor subset (``kernel_diagnostics=True``).

After every SGD epoch ``e`` the monitor kernel ``K_e`` (the NTK of the network on the
``m`` monitor samples, summed over logits; :func:`skntk.ntk.empirical_ntk`) is
compared with the kernel at initialisation and the kernel ``k`` epochs earlier, and
summarised by its alignment with the monitor samples' labels and its spectrum:

- ``kernel_distance_from_init``: ``1 - cos(K_e, K_0)`` (Fort et al., "Deep learning
  versus kernel learning", NeurIPS 2020, sec. 3);
- ``kernel_velocity``: ``1 - cos(K_e, K_{e-k})`` with ``k = switch_window`` (NaN for
  ``e < k``);
- ``kernel_alignment``: the centred kernel-target alignment (Cortes, Mohri and
  Rostamizadeh, JMLR 2012), :func:`skntk.ntk.centered_kernel_alignment`;
- ``kernel_effective_rank``: :func:`skntk.ntk.effective_rank` (Roy and Vetterli,
  EUSIPCO 2007);
- ``kernel_top_eigenvalues``: the :data:`N_TOP_EIGENVALUES` largest eigenvalues,
  :func:`skntk.ntk.kernel_spectrum`.

The kernels are brought to the host in float64; the eigenvalues come from one
symmetric eigendecomposition (LAPACK through scipy) per epoch, about a millisecond
for ``m = 128``.
"""

import math
from collections import deque

import numpy as np

from ._switch import _monitor_kernel_jit
from .ntk import _effective_rank_of_spectrum, centered_kernel_alignment, kernel_distance

N_TOP_EIGENVALUES = 5
"""Eigenvalues per epoch kept in ``history_["kernel_top_eigenvalues"]``."""

SCALAR_COLUMNS = ("kernel_distance_from_init", "kernel_velocity", "kernel_alignment",
                  "kernel_effective_rank")
"""History columns of one number per epoch (NaN where not computed)."""


def empty_row():
    """The diagnostics of an epoch where none are computed (NaN)."""
    row = {name: math.nan for name in SCALAR_COLUMNS}
    row["kernel_top_eigenvalues"] = np.full(N_TOP_EIGENVALUES, np.nan)
    return row


class KernelDiagnostics:
    """Diagnostics of the monitor kernel, one epoch at a time.

    Parameters
    ----------
    params0 : list of (W, b)
        Initial parameters (jax), ``theta_0``.
    X_monitor : jax array of shape (m', n_features)
        Monitor subset padded to ``m'`` rows (see :class:`skntk._switch.SwitchConfig`).
    n_monitor : int
        ``m``, the real monitor rows.
    Y_monitor : ndarray of shape (m, C)
        One-hot labels of the monitor samples.
    window : int
        ``k`` of the velocity.
    layer_scales : tuple or None, default=None
        Per-layer scales ``D`` of the parameterisation (the kernel is ``J D J^T``;
        :func:`skntk._parameterization.layer_scales`); ``None``: standard.
    """

    def __init__(self, params0, X_monitor, n_monitor, Y_monitor, window, layer_scales=None):
        self.layer_scales = layer_scales
        self.X_monitor = X_monitor
        self.m = n_monitor
        self.Y = np.asarray(Y_monitor, dtype=np.float64)
        self.K0 = self._kernel(params0)
        self.past = deque([self.K0], maxlen=window)
        self.window = window

    def _kernel(self, params):
        K = _monitor_kernel_jit(params, self.X_monitor, self.m,
                                layer_scales=self.layer_scales)
        if not K.is_fully_addressable:  # spread over the devices of several processes
            from jax.experimental import multihost_utils
            K = multihost_utils.process_allgather(K, tiled=True)
        return np.asarray(K, dtype=np.float64)[:self.m, :self.m]

    def record(self, epoch, params):
        """The diagnostics after SGD epoch ``epoch`` (1-based) with ``params``."""
        K = self._kernel(params)
        velocity = kernel_distance(K, self.past[0]) if epoch >= self.window else math.nan
        self.past.append(K)
        eigenvalues = np.linalg.eigvalsh((K + K.T) / 2)[::-1]
        top = np.full(N_TOP_EIGENVALUES, np.nan)
        top[:min(N_TOP_EIGENVALUES, len(eigenvalues))] = eigenvalues[:N_TOP_EIGENVALUES]
        try:
            alignment = centered_kernel_alignment(K, self.Y)
        except ValueError:  # a centred kernel or target of zero: undefined
            alignment = math.nan
        return dict(kernel_distance_from_init=float(kernel_distance(K, self.K0)),
                    kernel_velocity=float(velocity), kernel_alignment=float(alignment),
                    kernel_effective_rank=_effective_rank_of_spectrum(eigenvalues),
                    kernel_top_eigenvalues=top)
