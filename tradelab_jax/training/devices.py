"""Where a packed sweep runs: ``run.devices`` (``all`` or a count) and the 1-D mesh over its points.

Design (docs/clusters.md): the leading ``[S]`` points axis of the runner state, the hyperparameters and
the swept env params is sharded over a 1-D mesh axis ``points`` with ``jit`` + ``NamedSharding`` (no
``pmap``). The mesh uses the largest device count ``<= run.devices`` that divides ``S`` (no padding: a
padded point would cost a device's worth of work and change nothing; 8 points on 3 devices use 2). Every
point is computed by the same per-point program whatever the mesh, and nothing reduces across points, so
metrics and checkpoints do not depend on the device count.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tradelab_jax.errors import UserError

AXIS = "points"
VALID = "'all' or a whole number of local devices >= 1"


def requested_devices(value: Any, available: int) -> int:
    """``run.devices`` as a device count (``all``: every local device); UserError in one sentence."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return available
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if isinstance(value, bool) or n < 1 or str(n) != str(value).strip():
        raise UserError(f"invalid run.devices={value!r}; valid: {VALID}")
    if n > available:
        raise UserError(f"run.devices={n} but this process sees {available} local device(s); "
                        f"valid: {VALID} up to {available}")
    return n


def mesh_size(points: int, requested: int) -> int:
    """The largest device count ``<= requested`` that divides ``points``."""
    return max(d for d in range(1, max(1, min(points, requested)) + 1) if points % d == 0)


def points_mesh(points: int, value: Any = "all") -> Mesh:
    """The 1-D ``points`` mesh for a sweep of ``points`` points under ``run.devices=value``."""
    devices = jax.local_devices()
    n = mesh_size(points, requested_devices(value, len(devices)))
    return Mesh(devices[:n], (AXIS,))


def shard_points(tree: Any, mesh: Mesh, axes: Any = 0) -> Any:
    """``tree`` placed on ``mesh`` with its leaves' ``axes`` (0, or None: replicated) sharded over points."""
    def put(axis: Any, x: Any) -> Any:
        spec = PartitionSpec() if axis is None else PartitionSpec(*([None] * axis), AXIS)
        return jax.device_put(x, NamedSharding(mesh, spec))

    if axes == 0 or axes is None:
        return jax.tree.map(lambda x: put(axes, x), tree)
    return jax.tree.map(put, axes, tree, is_leaf=lambda a: a is None)
