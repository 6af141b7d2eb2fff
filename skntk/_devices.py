"""Data-parallel placement on several devices through ``jax.sharding``.

A one-axis :class:`jax.sharding.Mesh` (axis ``"batch"``) spans the chosen devices.
Sample-indexed arrays are sharded along their first axis, parameters are
replicated, and ``jax.jit`` partitions each computation over the mesh (GSPMD).
With a single device no mesh is made and every function is the identity, so the
one-device path is exactly the plain one.
"""

import warnings
from collections.abc import Sequence
from numbers import Integral
from typing import NamedTuple

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
        empty, holds something other than a jax device (for example a device of a
        pickled estimator that this process does not have) or a device twice.
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
        for position, device in enumerate(devices):
            if isinstance(device, MissingDevice):
                raise ValueError(
                    f"`devices[{position}]` is {device}: the estimator was pickled with a "
                    f"device that this process does not have (its devices: "
                    f"{', '.join(map(str, jax.devices()))}). Pass devices=None, an int or "
                    f"a list of this process's jax devices before fitting.")
            if not isinstance(device, jax.Device):
                raise ValueError(
                    f"`devices` must list jax devices (e.g. jax.local_devices()[:2]); "
                    f"`devices[{position}]` is {device!r}. Pass an int n for the first n "
                    f"local devices.")
        if len(set(devices)) < len(devices):
            raise ValueError(f"`devices` lists a device more than once: {list(devices)}. "
                             f"Pass each device once.")
        return list(devices)
    raise ValueError(f"`devices` must be None, a positive int or a non-empty list of "
                     f"jax devices; got {devices!r}.")


# --- pickling -----------------------------------------------------------------------
# A jax.Device is a handle to hardware owned by this process: it can be neither pickled
# nor deep-copied. A pickled estimator stores each device of its `devices` list by its
# platform and id instead, and unpickling looks the device up again.

class MissingDevice(NamedTuple):
    """A device of a pickled estimator that the unpickling process does not have."""

    platform: str
    id: int

    def __str__(self):
        return f"{self.platform} device {self.id} (not available in this process)"


class PickledDevices(tuple):
    """The ``devices`` parameter in the state of a pickled estimator: ``(platform, id)``
    for each jax device, other entries as they were."""


def devices_to_state(devices):
    """A picklable stand-in for a ``devices`` list holding jax devices (see
    :func:`devices_from_state`); any other value is returned unchanged."""
    kinds = (jax.Device, MissingDevice)
    if isinstance(devices, list) and any(isinstance(d, kinds) for d in devices):
        return PickledDevices((d.platform, d.id) if isinstance(d, kinds) else d
                              for d in devices)
    return devices


def _find_device(platform, device_id):
    try:
        candidates = jax.devices(platform)
    except RuntimeError:  # no backend of that platform in this process
        return None
    return next((d for d in candidates if d.id == device_id), None)


def devices_from_state(state):
    """The ``devices`` list back from :func:`devices_to_state`: each ``(platform, id)``
    becomes that device of this process, or a :class:`MissingDevice` (with a
    ``UserWarning``) when this process has none; fitting then raises, predicting runs as
    usual (prediction does not use ``devices``)."""
    if not isinstance(state, PickledDevices):
        return state
    devices = []
    for entry in state:
        if isinstance(entry, tuple) and len(entry) == 2:
            entry = _find_device(*entry) or MissingDevice(*entry)
        devices.append(entry)
    missing = [d for d in devices if isinstance(d, MissingDevice)]
    if missing:
        warnings.warn(
            f"The estimator was pickled with devices that this process does not have: "
            f"{', '.join(map(str, missing))}. It predicts as usual; set `devices` (None, an "
            f"int or this process's jax devices) before fitting it again.", UserWarning)
    return devices


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
