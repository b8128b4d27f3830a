"""Where a packed sweep runs: ``run.devices`` (``all`` or a count) and the split of its points over them.

Design (docs/clusters.md): the leading ``[S]`` points axis of the runner state, the hyperparameters and
the swept env params is cut into contiguous *blocks* of ``run.point_block`` points (null: one block per
device), and the blocks are spread evenly over the devices of a 1-D ``points`` mesh: the largest device
count ``<= run.devices`` that divides the number of blocks (no padding: a padded point would cost a
device's worth of work and change nothing; 8 one-point blocks on 3 devices use 2).

Every block runs the *same one-device program* (a vmap over the block's points), dispatched
asynchronously to its device (:class:`PointBlocks`), rather than one ``jit`` over a sharded array or a
``jax.shard_map``. Why: a point's bits depend on the program that computes it. Measured on this
repository's CPU with 4 host devices and 8-point sweeps: ``jit`` + ``NamedSharding`` gave checkpoints
differing by up to 2e-9 from 1 device (XLA's SPMD partitioner fuses differently); ``shard_map`` gave 2 and
4 devices equal to each other but not to 1 (a partitioned program is compiled differently from a
one-device one); and on the trading env even the one-device program of 8, 4 and 2 vmapped points gave
different last bits for the same point (XLA:CPU vectorises across the batch). So the block, not the
device, is the unit: with a fixed ``run.point_block`` every point is computed by the same executable
(one compiled copy per device, compiled concurrently) on the same inputs whatever the device count, and
1, 2 and 4 devices give identical bytes (tests/train/test_devices.py). Points are independent, so no
collective is needed and none is inserted.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tradelab_jax.errors import UserError

AXIS = "points"


class PeerError(UserError):
    """A peer process of a multi-process run did not meet this one in time (died, hangs, unreachable)."""

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


def local_devices() -> list[Any]:
    """This process's devices of the platform training runs on: the default backend's, or the platform of
    a ``jax.default_device(...)`` in effect (``tradelab parity`` re-runs a GPU run on the CPU inside
    one; without this its points would be put on the GPUs again)."""
    default = jax.config.jax_default_device
    if default is None:
        return jax.local_devices()
    return jax.local_devices(backend=default if isinstance(default, str) else default.platform)


def mesh_size(blocks: int, requested: int) -> int:
    """The largest device count ``<= requested`` that divides ``blocks``."""
    return max(d for d in range(1, max(1, min(blocks, requested)) + 1) if blocks % d == 0)


def block_size(points: int, value: Any) -> int | None:
    """``run.point_block`` checked against the sweep's ``points`` (None: one block per device)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or points % value:
        raise UserError(f"invalid run.point_block={value!r} for {points} points; valid: null or a whole "
                        f"number >= 1 that divides the number of points")
    return value


def _take(axis: Any, x: Any, lo: int, hi: int) -> Any:
    if axis is None:
        return x
    return jax.lax.slice_in_dim(x, lo, hi, axis=axis) if isinstance(x, jax.Array) else \
        np.take(np.asarray(x), np.arange(lo, hi), axis=axis)


class PointBlocks:
    """The points of a sweep as contiguous blocks of ``block`` points, spread in order over the mesh.

    A tree "in blocks" is a list with one tree per block (leaves committed to the block's device); a
    program runs once per block, each call dispatched asynchronously, so the devices run concurrently.
    """

    def __init__(self, mesh: Mesh, points: int, block: int | None = None):
        self.mesh = mesh
        self.devices = list(mesh.devices.flat)
        self.points = points
        self.size = block or points // len(self.devices)
        self.count = points // self.size
        self.owner = [j * len(self.devices) // self.count for j in range(self.count)]  # device of block j

    def split(self, tree: Any, axes: Any = 0) -> list[Any]:
        """``tree`` (leading ``[S]`` axis where ``axes`` says 0; None: replicated) as blocks on devices."""
        out = []
        for j in range(self.count):
            lo, hi = j * self.size, (j + 1) * self.size
            if axes == 0 or axes is None:
                block = jax.tree.map(lambda x, lo=lo, hi=hi: _take(axes, x, lo, hi), tree)
            else:
                block = jax.tree.map(lambda a, x, lo=lo, hi=hi: _take(a, x, lo, hi), axes, tree,
                                     is_leaf=lambda a: a is None)
            out.append(jax.device_put(block, self.devices[self.owner[j]]))
        return out

    def gather(self, blocks: list[Any]) -> Any:
        """Blocks (over points on axis 0) as one host tree with the ``[S]`` axis."""
        host = jax.device_get(blocks)
        return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *host)

    def run(self, fns: Any, *args: list[Any]) -> list[Any]:
        """``fns[device of j](*(a[j] for a in args))`` per block ``j`` (``fns``: one callable, or one per
        device)."""
        fns = fns if isinstance(fns, list) else [fns] * len(self.devices)
        return [fns[self.owner[j]](*(a[j] for a in args)) for j in range(self.count)]

    def apply(self, fn: Any, args: tuple[Any, ...], axes: tuple[Any, ...]) -> Any:
        """``fn`` (a jitted vmap over points, ``in_axes=axes``) on every block of ``args``, the blocks on
        their devices concurrently; the outputs as one host tree with the ``[S]`` axis."""
        parts = [self.split(a, ax) for a, ax in zip(args, axes, strict=True)]
        return self.gather(self.run(fn, *parts))

    def resized(self, points: int) -> PointBlocks:
        """Blocks of the same size over the same devices for ``points`` points (a cross-validation fold's
        points at evaluation); one block when the size does not divide them."""
        size = self.size if points % self.size == 0 else points
        n = mesh_size(points // size, len(self.devices))
        return PointBlocks(Mesh(np.array(self.devices[:n]), (AXIS,)), points, size)

    def compile(self, jitted: Any, *args: list[Any], static: tuple[Any, ...] = ()) -> list[Any]:
        """``jitted`` lowered and compiled once per device (on its first block), the compiles in parallel
        threads (XLA releases the GIL while compiling)."""
        first = [self.owner.index(i) for i in range(len(self.devices))]

        def one(i: int) -> Any:
            return jitted.lower(*(a[first[i]] for a in args), *static).compile()

        if len(self.devices) == 1:
            return [one(0)]
        with ThreadPoolExecutor(len(self.devices)) as pool:
            return list(pool.map(one, range(len(self.devices))))


def split_points(points: int, value: Any, block: int | None, num_envs: int) -> PointBlocks | EnvSplit:
    """How ``points`` points run on the devices ``run.devices=value`` asks for: in blocks of ``block``
    points over a ``points`` mesh (:class:`PointBlocks`), or, when the blocks would leave devices idle (one
    run on 8 GPUs) and more of them divide ``agent.num_envs``, with the environments split over an
    ``envs`` mesh (:class:`EnvSplit`). The split's ``mesh`` names its axis (status.json's ``split``)."""
    devices = local_devices()
    requested = requested_devices(value, len(devices))
    used = mesh_size(points // (block or 1), requested)
    n = max(d for d in range(1, requested + 1) if num_envs % d == 0)
    if n > used:
        return EnvSplit(Mesh(np.array(devices[:n]), ("envs",)), points, num_envs)
    return PointBlocks(Mesh(np.array(devices[:used]), (AXIS,)), points, block)


class EnvSplit:
    """Every point in one program whose environments are split over the devices of an ``envs`` mesh.

    Used when there are fewer point blocks than devices. Each leaf with an environment axis (axis 1,
    after the points axis) is sharded along it and everything else is replicated; XLA's SPMD partitioner
    puts in the collectives the PPO update needs (the minibatch shuffle over every environment's samples,
    the gradient mean). The math is the one-device program's, but its sums add in another order, so the
    last bits depend on the device count (unlike :class:`PointBlocks`; docs/clusters.md). Same interface as
    :class:`PointBlocks`, as one block spanning the mesh; evaluation (one env per policy) runs on the first
    device.
    """

    def __init__(self, mesh: Mesh, points: int, num_envs: int):
        self.mesh, self.points, self.num_envs = mesh, points, num_envs
        self.devices = list(mesh.devices.flat)
        self.size, self.count, self.owner = points, 1, [0]

    def _sharding(self, x: Any) -> NamedSharding:
        shape = np.shape(x)
        return NamedSharding(self.mesh, P(None, "envs") if len(shape) >= 2 and shape[1] == self.num_envs
                             else P())

    def split(self, tree: Any, axes: Any = 0) -> list[Any]:
        return [jax.tree.map(lambda x: jax.device_put(x, self._sharding(x)), tree)]

    def gather(self, blocks: list[Any]) -> Any:
        return jax.device_get(blocks[0])

    def run(self, fns: Any, *args: list[Any]) -> list[Any]:
        """The outputs put back on this split's shardings (a no-op where XLA kept them): the compiled
        chunk was lowered with them, and an executable refuses inputs sharded any other way."""
        fn = fns[0] if isinstance(fns, list) else fns
        return self.split(fn(*(a[0] for a in args)))

    def compile(self, jitted: Any, *args: list[Any], static: tuple[Any, ...] = ()) -> list[Any]:
        return [jitted.lower(*(a[0] for a in args), *static).compile()]

    def apply(self, fn: Any, args: tuple[Any, ...], axes: tuple[Any, ...]) -> Any:
        return jax.device_get(fn(*jax.device_put(args, self.devices[0])))

    def resized(self, points: int) -> EnvSplit:
        return self


# -- several processes (jax.distributed) ------------------------------------------------------------------


def distributed_settings(run: dict[str, Any], environ: Any = None) -> dict[str, Any] | None:
    """How this process joins a multi-process run, or None for a single process.

    Explicit ``run.coordinator`` (``host:port``), ``run.num_processes`` and ``run.process_id`` win; else a
    SLURM task of a job step with ``SLURM_NTASKS > 1`` joins with JAX's own SLURM detection (coordinator:
    the first node of the step, ids from ``SLURM_PROCID``). ``run.distributed_timeout_s`` bounds the join
    and every later wait on a peer (docs/clusters.md). UserError in one sentence for a half-given setting.
    """
    import os

    environ = os.environ if environ is None else environ
    timeout = run.get("distributed_timeout_s")
    timeout = 120 if timeout is None else timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise UserError(f"invalid run.distributed_timeout_s={timeout!r}; valid: whole seconds >= 1")
    given = {k: run.get(k) for k in ("coordinator", "num_processes", "process_id")}
    if any(v is not None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise UserError(f"run.coordinator, run.num_processes and run.process_id go together; missing: "
                            f"{', '.join('run.' + k for k in missing)}")
        n, pid = given["num_processes"], given["process_id"]
        if not (isinstance(n, int) and n >= 1 and isinstance(pid, int) and 0 <= pid < n):
            raise UserError(f"invalid run.num_processes={n!r} / run.process_id={pid!r}; valid: "
                            "num_processes >= 1 and 0 <= process_id < num_processes")
        if ":" not in str(given["coordinator"]):
            raise UserError(f"invalid run.coordinator={given['coordinator']!r}; valid: host:port of "
                            "process 0")
        return {"coordinator_address": str(given["coordinator"]), "num_processes": n, "process_id": pid,
                "timeout_s": timeout}
    if int(environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in environ:
        return {"coordinator_address": None, "num_processes": None, "process_id": None, "timeout_s": timeout}
    return None


def join(settings: dict[str, Any]) -> None:
    """``jax.distributed.initialize`` with ``settings`` (:func:`distributed_settings`); the join, and the
    heartbeat after it, time out after ``timeout_s``. An unreachable coordinator is a UserError."""
    timeout = int(settings["timeout_s"])
    # Recoverable: a dead peer is not fatal to the others inside jaxlib (which would abort them with a C++
    # stack trace the moment the coordination service notices); each survivor fails in one sentence at its
    # next barrier instead (:func:`barrier`).
    jax.config.update("jax_enable_recoverability", True)
    try:
        jax.distributed.initialize(settings["coordinator_address"], settings["num_processes"],
                                   settings["process_id"], initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=timeout, shutdown_timeout_seconds=timeout)
        # The backends start now, while every peer is there: they exchange the processes' device
        # topologies, which would otherwise wait on a peer that died later.
        jax.devices()
    except Exception as err:  # jaxlib's XlaRuntimeError: the coordinator or a peer did not answer
        where = settings["coordinator_address"] or "the SLURM job step's first node"
        raise UserError(f"could not join the distributed run at {where} within {timeout} s "
                        f"({' '.join(str(err).split())[:200]})") from None


@dataclass
class Process:
    """This process's place in a multi-process run (after :func:`join`)."""

    index: int  # jax.process_index()
    count: int  # jax.process_count()
    timeout_s: int  # run.distributed_timeout_s: every wait on a peer fails after this
    meetings: int = 0  # barriers and agreements so far: every process meets its peers in the same order

    def _key(self, name: str) -> str:
        # The coordination service keeps a finished barrier's and a set key's name: a Hydra multirun's
        # second job in this process meets its peers under new names.
        self.meetings += 1
        return f"tradelab/{self.meetings}/{name}"

    def points(self, points: int, block: int | None = None) -> range:
        """The points this process trains: whole blocks of ``block`` points (:func:`share` of the blocks),
        so every point goes through the same block program as in a one-process run of that block."""
        if block is None:
            return share(points, self.count, self.index)
        blocks = share(points // block, self.count, self.index)
        return range(blocks.start * block, blocks.stop * block)

    def barrier(self, name: str) -> None:
        """Wait for every peer at ``name`` (one sentence after ``timeout_s``: :func:`barrier`)."""
        barrier(name, self.timeout_s, key=self._key(name))

    def agree(self, name: str, value: str) -> str:
        """Process 0's ``value`` for ``name``, the same string in every process (e.g. the timestamp that
        names the run directory: two processes started a second apart must write into one)."""
        from jax._src import distributed

        client = distributed.global_state.client
        key = self._key(name)
        if self.index == 0:
            client.key_value_set(key, value, allow_overwrite=True)
            return value
        try:
            return str(client.blocking_key_value_get(key, self.timeout_s * 1000))
        except Exception:  # jaxlib's DEADLINE_EXCEEDED: process 0 died or never got there
            raise PeerError(f"process 0 did not publish {name!r} within {self.timeout_s} s (run."
                            "distributed_timeout_s): it died, hangs or is unreachable; see its log") from None


def leads(proc: Process | None) -> bool:
    """Whether this process writes a sweep's own files (packed.json, .hydra/, stats.json): a single
    process, or process 0 of a multi-process run."""
    return proc is None or proc.index == 0


_JOINED: list[Process] = []  # the one jax.distributed.initialize of this process (it cannot be repeated)


def joined() -> Process | None:
    """This process's place when it joined a multi-process run, else None."""
    return _JOINED[0] if _JOINED else None


def ensure_joined(run: dict[str, Any]) -> Process | None:
    """Join the multi-process run ``run`` asks for (:func:`distributed_settings`) once per process; the
    :class:`Process`, or None for a single process. A second call with other settings is refused."""
    settings = distributed_settings(run)
    if settings is None:
        if _JOINED:
            raise UserError("this process already joined a multi-process run; a single-process run cannot "
                            "follow it in the same process")
        return None
    if not _JOINED:
        join(settings)
        _JOINED.append(Process(index=jax.process_index(), count=jax.process_count(),
                               timeout_s=int(settings["timeout_s"])))
    proc = _JOINED[0]
    if settings["num_processes"] is not None and (settings["num_processes"], settings["process_id"]) != (
            proc.count, proc.index):
        raise UserError(f"this process already joined as process {proc.index} of {proc.count}; a run asking "
                        f"for process {settings['process_id']} of {settings['num_processes']} needs a new "
                        "process")
    return proc


def share(points: int, processes: int, process: int) -> range:
    """The contiguous points process ``process`` of ``processes`` trains (the first ones get one more
    when they do not divide evenly)."""
    base, extra = divmod(points, processes)
    lo = process * base + min(process, extra)
    return range(lo, lo + base + (process < extra))


def barrier(name: str, timeout_s: int, key: str | None = None) -> None:
    """Wait until every process reached ``name``; a peer that died or hangs is one UserError after
    ``timeout_s`` (shorter than the heartbeat timeout, so this message comes before jaxlib's abort)."""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        return
    try:
        client.wait_at_barrier(key or name, int(timeout_s) * 1000)
    except Exception:  # jaxlib's DEADLINE_EXCEEDED / UNAVAILABLE, pages of coordination-service text
        raise PeerError(f"a peer process did not reach {name!r} within {timeout_s} s (run."
                        "distributed_timeout_s): it died, hangs or is unreachable; see its log") from None


def exit_without_peers(code: int) -> None:
    """End this process now with ``code``, skipping ``jax.distributed.shutdown``.

    Why: JAX's exit hook waits for every peer at a shutdown barrier and, with a peer dead, aborts the
    process (SIGABRT, a C++ stack trace) after the heartbeat timeout, burying the one-sentence error.
    Everything this process wrote is already on disk (atomic writes), so nothing is lost.
    """
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
