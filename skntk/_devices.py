"""Data-parallel placement on several devices through ``jax.sharding``.

A one-axis :class:`jax.sharding.Mesh` (axis ``"batch"``) spans the chosen devices.
Sample-indexed arrays are sharded along their first axis, parameters are
replicated, and ``jax.jit`` partitions each computation over the mesh (GSPMD).
With a single device no mesh is made and every function is the identity, so the
one-device path is exactly the plain one.
"""

from collections.abc import Sequence
from numbers import Integral

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def resolve_devices(devices=None):
    """The devices to use.

    Parameters
    ----------
    devices : None, int or sequence of jax.Device
        ``None``: every local device of JAX's default backend
        (``jax.local_devices()``); an int ``n``: the first ``n`` of them; a sequence:
        those devices.

    Returns
    -------
    devices : list of jax.Device

    Raises
    ------
    ValueError
        If an int is not between 1 and the number of local devices, or the sequence is
        empty.
    """
    local = jax.local_devices()
    if devices is None:
        return list(local)
    if isinstance(devices, Integral):
        if not 1 <= devices <= len(local):
            raise ValueError(f"`devices={devices}` asks for more devices than the "
                             f"{len(local)} available (or fewer than 1); pass an int "
                             f"between 1 and {len(local)}, a list of devices, or None.")
        return list(local[:devices])
    if isinstance(devices, Sequence) and len(devices) > 0:
        return list(devices)
    raise ValueError(f"`devices` must be None, a positive int or a non-empty list of "
                     f"jax devices; got {devices!r}.")


def data_mesh(devices=None):
    """A one-axis mesh over ``devices`` (see :func:`resolve_devices`), or ``None`` for one
    device."""
    devices = resolve_devices(devices)
    if len(devices) == 1:
        return None
    return Mesh(np.array(devices), (BATCH_AXIS,))


def mesh_size(mesh):
    """Number of devices of ``mesh`` (1 for ``None``)."""
    return 1 if mesh is None else mesh.devices.size


def padded_length(n, mesh):
    """``n`` rounded up to a multiple of the mesh size."""
    size = mesh_size(mesh)
    return -(-n // size) * size


def rows_sharding(mesh, ndim):
    """Sharding of an ``ndim``-array split along its first axis."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS, *([None] * (ndim - 1))))


def shard_rows(array, mesh):
    """Pad ``array`` with zero rows to a multiple of the mesh size and split its rows over
    the mesh. Returns the array unchanged (as a jax array) without a mesh."""
    if mesh is None:
        return jax.numpy.asarray(array)
    array = np.asarray(array)
    n_pad = padded_length(array.shape[0], mesh) - array.shape[0]
    if n_pad:
        array = np.concatenate([array, np.zeros((n_pad, *array.shape[1:]), array.dtype)])
    return jax.device_put(array, rows_sharding(mesh, array.ndim))


def replicate(tree, mesh):
    """Place every array of ``tree`` whole on every device of the mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def constrain_rows(array, mesh):
    """Inside ``jit``: ask for ``array`` split along its first axis (no-op without a mesh)."""
    if mesh is None:
        return array
    return jax.lax.with_sharding_constraint(array, rows_sharding(mesh, array.ndim))
