"""Deterministic, resumable batching with a fixed batch shape."""

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from ._augment import crop_flip
from ._sources import Source


class Batch(NamedTuple):
    """One batch of NumPy arrays with a fixed shape.

    - `x`: `(batch_size, H, W, C)` float32 images.
    - `y`: `(batch_size,)` int32 labels.
    - `mask`: `(batch_size,)` bool, `True` for real examples; `False` marks the
      zero padding of a short last batch (only with `drop_remainder=False`).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray


# Distinct streams for the permutation and the augmentation of each batch.
_ORDER, _AUGMENT = 0, 1
_PADDING = 4  # of the random crop


class Loader:
    """Batches from a [`holoode.data.Source`][], reproducible and resumable.

    The order of epoch `e` is a permutation drawn from
    `np.random.default_rng([seed, 0, e])`, and the augmentation of batch `k` of
    that epoch from `np.random.default_rng([seed, 1, e, k])`. Every batch is
    thus a pure function of `(seed, epoch, k)`: `loader.epoch(e, start=k)`
    yields exactly the batches `k, k+1, …` that `loader.epoch(e)` would, which
    is what makes resuming a run bit-for-bit identical.

    Every batch has the same shape, so a compiled training step never
    recompiles. With `drop_remainder=True` (training) the last
    `len(source) % batch_size` examples of each (shuffled) epoch are skipped;
    with `drop_remainder=False` (evaluation) the last batch is zero-padded and
    `mask` marks its real examples, so that every example is seen exactly once.

    With `shard=(i, n)` the loader serves only the `i`-th of `n` equal,
    contiguous slices of every batch, and reads only those examples: process `i`
    of a run over `n` processes. The `n` slices put together are exactly the
    batch that `shard=(0, 1)` serves, augmentation included, so the data a run
    sees does not depend on the number of processes.

    **Arguments:**

    - `source`: the data.
    - `batch_size`: examples per batch.
    - `seed`: seed of the shuffling and augmentation.
    - `shuffle`: draw a new order every epoch (otherwise the source's order).
    - `augment`: apply the paper's CIFAR augmentation
      ([`holoode.data.random_crop_flip`][]: 4-pixel zero padding of the raw
      image, i.e. `source.fill` after normalisation, random crop, random
      horizontal flip).
    - `drop_remainder`: see above.
    - `shard`: `(i, n)`, see above; `batch_size` must be a multiple of `n`.
    """

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        augment: bool = False,
        drop_remainder: bool = True,
        shard: tuple[int, int] = (0, 1),
    ):
        if not isinstance(source, Source):
            raise TypeError(
                f"Loader(source=...) needs a holoode.data.Source, got "
                f"{type(source).__name__}; wrap arrays with "
                "`holoode.data.from_arrays(images, labels)`."
            )
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(
                f"Loader(batch_size=...) must be a positive integer, got {batch_size}."
            )
        if int(seed) != seed or seed < 0:
            raise ValueError(f"Loader(seed=...) must be an integer ≥ 0, got {seed}.")
        if drop_remainder and batch_size > len(source):
            raise ValueError(
                f"Loader(batch_size={batch_size}) exceeds the {len(source)} examples "
                f"of {source.name!r}/{source.split!r}, so with drop_remainder=True "
                "an epoch has no batch; use a smaller batch_size or "
                "drop_remainder=False."
            )
        index, count = (int(v) for v in shard)
        if not (count >= 1 and 0 <= index < count and batch_size % count == 0):
            raise ValueError(
                f"Loader(shard={shard}) needs (i, n) with 0 ≤ i < n and batch_size "
                f"= {batch_size} a multiple of n."
            )
        self.shard = (index, count)
        self.source = source
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.drop_remainder = bool(drop_remainder)

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.source), self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        """The example indices of epoch `epoch`, in the order they are served."""
        n = len(self.source)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, _ORDER, epoch]).permutation(n)

    def batch(self, epoch: int, index: int, order: np.ndarray | None = None) -> Batch:
        """Batch `index` of epoch `epoch` (`order` may pass `self.order(epoch)`
        to save recomputing it); with `shard=(i, n)`, its `i`-th slice, of
        `batch_size / n` examples."""
        if not 0 <= index < len(self):
            raise IndexError(
                f"Batch index {index} out of range: an epoch has {len(self)} batches."
            )
        if order is None:
            order = self.order(epoch)
        b = self.batch_size
        batch = order[index * b : (index + 1) * b]
        part, count = self.shard
        b //= count
        lo, hi = part * b, (part + 1) * b
        indices = batch[lo:hi]
        if len(indices):
            x, y = self.source.get(indices)
        else:  # a shard wholly in the padding of a short last batch
            x = np.zeros((0, *self.source.image_shape), np.float32)
            y = np.zeros(0, np.int32)
        if self.augment and len(indices):
            # The draws of `random_crop_flip` for the whole batch, of which this
            # shard applies its own: the same images whatever the shard count.
            rng = np.random.default_rng([self.seed, _AUGMENT, epoch, index])
            offsets = rng.integers(0, 2 * _PADDING + 1, size=(len(batch), 2))
            flips = rng.random(len(batch)) < 0.5
            x = crop_flip(
                x, offsets[lo:hi], flips[lo:hi], padding=_PADDING, fill=self.source.fill
            )
        real = len(indices)
        mask = np.zeros(b, bool)
        mask[:real] = True
        if real < b:
            x = np.concatenate([x, np.zeros((b - real, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(b - real, y.dtype)])
        return Batch(np.ascontiguousarray(x, np.float32), np.asarray(y, np.int32), mask)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Yield the batches `start, start+1, …` of epoch `epoch`."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be an integer ≥ 0, got {epoch}.")
        if int(start) != start or not 0 <= start <= len(self):
            raise ValueError(
                f"start must be an integer in [0, {len(self)}] (batches per epoch), "
                f"got {start}."
            )
        order = self.order(int(epoch))
        for k in range(int(start), len(self)):
            yield self.batch(int(epoch), k, order)

    def __repr__(self) -> str:
        return (
            f"Loader({self.source!r}, batch_size={self.batch_size}, seed={self.seed},"
            f" shuffle={self.shuffle}, augment={self.augment}, "
            f"drop_remainder={self.drop_remainder}, shard={self.shard})"
        )
