"""Data parallelism with `jax.sharding`: the batch split over devices, the
parameters replicated, over the devices of one process or, after
`jax.distributed.initialize`, of several processes (hosts)."""

import contextlib
import json
import os
import sys
import threading
import time
import traceback

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._config import TrainConfig


# A process that sends no heartbeat for this long counts as dead, and
# jax.distributed then stops the others (JAX's default is 100 s). A crash is
# usually noticed at once, through the closed connection; this bounds the wait
# when it is not. To choose other values, call `jax.distributed.initialize`
# before `holoode.train`.
HEARTBEAT_TIMEOUT = 30


def initialize(config: TrainConfig) -> None:
    """Start `jax.distributed` if the config asks for it (`distributed=True`, or
    any of `coordinator`, `num_processes`, `process_id` given) and it is not
    running yet. Unset values are left to JAX's auto-detection (SLURM, Open MPI,
    Kubernetes, TPU pods)."""
    explicit = (config.coordinator, config.num_processes, config.process_id)
    if not (config.distributed or any(v is not None for v in explicit)):
        return
    if jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize(
            coordinator_address=config.coordinator,
            num_processes=config.num_processes,
            process_id=config.process_id,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
        )
    except RuntimeError as e:
        if "must be called before" not in str(e):
            raise
        raise RuntimeError(
            "TrainConfig(distributed=True) must start jax.distributed before this "
            "process uses JAX for anything else (creating an array, listing "
            "devices). Train first thing in the script, or call "
            "`jax.distributed.initialize(...)` yourself at the top of it."
        ) from None
    except ValueError as e:
        raise ValueError(
            f"jax.distributed could not tell how this process belongs to a "
            f"multi-process run ({e}). Outside SLURM, Open MPI or a TPU pod, give "
            "--coordinator HOST:PORT --num-processes N --process-id I (the same "
            "coordinator and N on every process, I = 0 … N-1)."
        ) from None


@jax.jit
def _all_finite(x):
    return jnp.all(jnp.isfinite(x))


class DataParallel:
    """Places batches and parameters on a one-axis device mesh.

    The batch is sharded along its leading axis over `Mesh(devices, ("data",))`;
    the parameters, optimiser state and PRNG key are replicated. The compiled step
    is written for one device: XLA's SPMD partitioner splits the per-example work
    and turns the batch means (the gradient, the loss) into all-reduces. With one
    device this is plain single-device execution.

    With several processes (after `jax.distributed.initialize()`) the mesh holds
    every process's devices, ordered by process, so that process `i` of `n` holds
    the `i`-th of `n` equal, contiguous slices of each global batch: the slice it
    reads (`holoode.data.Loader(..., shard=(i, n))`) and hands to `shard`, which
    assembles the global array with `jax.make_array_from_process_local_data`.
    Every process runs the same compiled program on it.

    **Arguments:**

    - `num_devices`: use the first this many of each process's local devices
      (`None`: all of them). Every process must have as many.
    """

    def __init__(self, num_devices: int | None = None):
        self.index, self.count = jax.process_index(), jax.process_count()
        local = jax.local_devices()
        if num_devices is not None and not 1 <= num_devices <= len(local):
            raise ValueError(
                f"num_devices={num_devices}, but JAX sees {len(local)} local "
                f"device(s): {local}."
            )
        per = len(local) if num_devices is None else num_devices
        devices = []
        for p in range(self.count):
            own = sorted(
                (d for d in jax.devices() if d.process_index == p), key=lambda d: d.id
            )
            if len(own) < per:
                raise ValueError(
                    f"Process {p} has {len(own)} device(s), process {self.index} "
                    f"uses {per}: give every process as many devices, or set "
                    f"num_devices={min(per, len(own))}."
                )
            devices += own[:per]
        self.mesh = Mesh(np.array(devices), ("data",))
        self.batch = NamedSharding(self.mesh, PartitionSpec("data"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def size(self) -> int:
        return self.mesh.size

    @property
    def is_first(self) -> bool:
        """Whether this is process 0, the one that writes files."""
        return self.index == 0

    def check_batch_size(self, name: str, batch_size: int) -> None:
        if batch_size % self.size:
            raise ValueError(
                f"{name}={batch_size} must be a multiple of the {self.size} devices "
                f"the batch is split over; use e.g. {name}="
                f"{(batch_size // self.size + 1) * self.size}, or set num_devices."
            )

    def shard(self, *arrays):
        """NumPy batch arrays → device arrays split along axis 0. With several
        processes, each passes its own slice and gets the global batch."""
        if self.count == 1:
            return tuple(jax.device_put(a, self.batch) for a in arrays)
        return tuple(
            jax.make_array_from_process_local_data(
                self.batch, a, (a.shape[0] * self.count, *a.shape[1:])
            )
            for a in arrays
        )

    def all_finite(self, local: np.ndarray, sharded) -> bool:
        """Whether the whole global batch is finite (the same answer on every
        process, so that all of them stop together on bad data)."""
        if self.count == 1:
            return bool(np.all(np.isfinite(local)))
        return bool(_all_finite(sharded))

    def replicate(self, tree):
        """A copy of every array leaf of `tree` on every device."""
        arrays, static = eqx.partition(tree, eqx.is_array)
        if self.count == 1:
            return eqx.combine(jax.device_put(arrays, self.replicated), static)

        def put(a):
            # Values held by this process (the same on every process) go onto the
            # global mesh from host memory; key arrays travel as their raw data.
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                data = jax.device_put(np.asarray(jr.key_data(a)), self.replicated)
                return jr.wrap_key_data(data, impl=jr.key_impl(a))
            return jax.device_put(np.asarray(a), self.replicated)

        return eqx.combine(jax.tree.map(put, arrays), static)

    def local(self, tree):
        """Replicated global arrays → this process's copy (no communication), for
        writing a checkpoint on one process."""

        def own(a):
            if isinstance(a, jax.Array) and not a.is_fully_addressable:
                return a.addressable_data(0)
            return a

        return jax.tree.map(own, tree, is_leaf=eqx.is_array)

    def from_first(self, tree):
        """Process 0's values of the array leaves of `tree` on every process (the
        others pass arrays of the same shapes)."""
        if self.count == 1:
            return tree
        arrays, static = eqx.partition(tree, eqx.is_array)
        keys = jax.tree.map(
            lambda a: jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key), arrays
        )
        raw = jax.tree.map(
            lambda a, k: np.asarray(jr.key_data(a) if k else a), arrays, keys
        )
        raw = multihost_utils.broadcast_one_to_all(raw)
        arrays = jax.tree.map(
            lambda r, a, k: jr.wrap_key_data(r, impl=jr.key_impl(a)) if k else r,
            raw,
            arrays,
            keys,
        )
        return eqx.combine(arrays, static)

    def preempted(self, step: int) -> bool:
        """Whether every process has reached the step at which to checkpoint and
        stop because one of them received a preemption notice (SIGTERM, e.g. from
        `scancel` or the end of a SLURM allocation). Must be called at every step
        by every process."""
        if not jax.distributed.is_initialized():
            return False
        return multihost_utils.reached_preemption_sync_point(step)


def on_first(fn, errors: tuple[type[Exception], ...] = (ValueError,)):
    """Call `fn()` on process 0 only and give its JSON-serialisable result to
    every process; if it raises one of `errors`, every process raises an
    exception of that type with its message (so that all stop together)."""
    if jax.process_count() == 1:
        return fn()
    first = jax.process_index() == 0
    reply = None
    if first:
        try:
            reply = {"value": fn()}
        except errors as e:
            names = [c.__name__ for c in type(e).__mro__]
            reply = {"error": names, "message": str(e)}
    data = json.dumps(reply).encode() if first else b""
    size = int(multihost_utils.broadcast_one_to_all(np.int64(len(data))))
    buffer = np.zeros(size, np.uint8)
    buffer[: len(data)] = np.frombuffer(data, np.uint8)
    reply = json.loads(multihost_utils.broadcast_one_to_all(buffer).tobytes())
    if "error" in reply:
        kind = next(c for c in errors if c.__name__ in reply["error"])
        raise kind(reply["message"])
    return reply["value"]


@contextlib.contextmanager
def stop_all_on_error(agreed: tuple[type[BaseException], ...] = ()):
    """With several processes, an exception that only this process raises
    (not one of `agreed`, which every process raises at the same point)
    would leave the others waiting for it in a collective operation forever.
    Instead this process reports it and exits at once; `jax.distributed` then
    stops the others with a message naming this process."""
    try:
        yield
    except agreed:
        raise
    except BaseException as e:
        count, me = jax.process_count(), jax.process_index()
        if count == 1:
            raise
        lost = isinstance(e, jax.errors.JaxRuntimeError)
        gone = _lost_processes(count) if lost else []
        if gone:
            what = (
                f"process {me} of {count} stops because process(es) "
                f"{', '.join(map(str, gone))} stopped or cannot be reached (see "
                "their logs for why)"
            )
        elif lost:
            what = (
                f"process {me} of {count} stops: a collective operation failed "
                f"({e}), most likely because another process stopped (see the "
                "other processes' logs)"
            )
        else:
            traceback.print_exc()
            what = (
                f"process {me} of {count} failed ({type(e).__name__}: {e}); it "
                "exits so that the other processes stop too"
            )
        print(
            f"holoode: {what}. The last complete checkpoint is intact: resume "
            "with --resume (with any number of processes).",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(1)


def _lost_processes(count: int) -> list[int]:
    """The processes that the coordination service no longer sees (best effort:
    this is not part of JAX's public API)."""
    try:
        from jax._src import distributed

        client = distributed.global_state.client
    except ImportError:
        return []
    return _ask_for_lost(client, count, jax.process_index())


def _ask_for_lost(
    client, count: int, me: int, wait: float = HEARTBEAT_TIMEOUT + 5.0
) -> list[int]:
    """The processes that `client`'s coordination service no longer sees. A
    process that has just died still counts as live until the service notices
    its closed connection or its missed heartbeats: ask again for up to `wait`
    seconds (by then `jax.distributed` stops this process itself). The service
    runs in process 0: if the request to it fails, process 0 is the one lost."""
    deadline = time.monotonic() + wait
    while True:
        live = _live_processes(client, count)
        if live == "no answer":
            return []
        if live == "failed":
            return [0] if me != 0 else []
        gone = sorted(set(range(count)) - set(live))
        if gone or time.monotonic() > deadline:
            return gone
        time.sleep(0.25)


def _live_processes(client, count: int):
    """The processes the coordination service sees; "failed" if the request
    failed, "no answer" if it got none in 5 s (asked in a thread, so that a
    service that does not answer cannot hold this up)."""
    answer = {}

    def ask():
        try:
            answer["live"] = client.get_live_nodes(list(range(count)))
        except Exception:
            answer["live"] = "failed"

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout=5.0)
    return answer.get("live", "no answer")
