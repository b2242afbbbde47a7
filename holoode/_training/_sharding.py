"""Data parallelism with `jax.sharding`: the batch split over devices, the
parameters replicated."""

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class DataParallel:
    """Places batches and parameters on a one-axis device mesh.

    The batch is sharded along its leading axis over `Mesh(devices, ("data",))`;
    the parameters, optimiser state and PRNG key are replicated. The compiled step
    is written for one device: XLA's SPMD partitioner splits the per-example work
    and turns the batch means (the gradient, the loss) into all-reduces. With one
    device this is plain single-device execution; the same code runs on several
    GPUs of one host, and on several hosts after `jax.distributed.initialize()`
    (then `jax.devices()` lists every host's devices, and each host must feed the
    slice of the global batch that its devices hold, e.g. with
    `jax.make_array_from_process_local_data`; this class handles the single-host
    case, where one process feeds every device).

    **Arguments:**

    - `num_devices`: use the first this many of `jax.devices()` (`None`: all).
    """

    def __init__(self, num_devices: int | None = None):
        devices = jax.devices()
        if num_devices is not None:
            if not 1 <= num_devices <= len(devices):
                raise ValueError(
                    f"num_devices={num_devices}, but JAX sees {len(devices)} "
                    f"device(s): {devices}."
                )
            devices = devices[:num_devices]
        self.mesh = Mesh(np.array(devices), ("data",))
        self.batch = NamedSharding(self.mesh, PartitionSpec("data"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def size(self) -> int:
        return self.mesh.size

    def check_batch_size(self, name: str, batch_size: int) -> None:
        if batch_size % self.size:
            raise ValueError(
                f"{name}={batch_size} must be a multiple of the {self.size} devices "
                f"the batch is split over; use e.g. {name}="
                f"{(batch_size // self.size + 1) * self.size}, or set num_devices."
            )

    def shard(self, *arrays):
        """NumPy batch arrays → device arrays split along axis 0."""
        return tuple(jax.device_put(a, self.batch) for a in arrays)

    def replicate(self, tree):
        """A copy of every array leaf of `tree` on every device."""
        arrays, static = eqx.partition(tree, eqx.is_array)
        return eqx.combine(jax.device_put(arrays, self.replicated), static)
