"""Random-access image sources: the common interface and the in-memory kind."""

import abc

import numpy as np


class Source(abc.ABC):
    """A random-access, lazily read set of labelled images.

    A source holds `len(source)` examples of shape `image_shape = (H, W, C)` with
    integer labels in `[0, num_classes)`. `get(indices)` returns the normalised
    float32 images `(B, H, W, C)` and int32 labels `(B,)` of those examples, in
    the given order. Sources read only what `get` asks for, so data sets larger
    than memory (ImageNet 32×32 is ~15 GB as float32) work.
    """

    name: str
    split: str
    image_shape: tuple[int, int, int]
    num_classes: int
    # The normalised value of a black pixel (scalar or per channel): the padding
    # of the crop augmentation.
    fill: float | np.ndarray = 0.0

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def _check_indices(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not (
            indices.size == 0 or np.issubdtype(indices.dtype, np.integer)
        ):
            raise ValueError(
                f"{type(self).__name__}.get(indices) needs a 1-D integer array, got "
                f"dtype {indices.dtype} and shape {indices.shape}."
            )
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(
                f"{self.name!r}/{self.split!r} has {len(self)} examples; indices "
                f"must lie in [0, {len(self)}), got range "
                f"[{indices.min()}, {indices.max()}]."
            )
        return indices.astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
            f"len={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})"
        )


def check_finite(images: np.ndarray, what: str) -> None:
    """Raise `ValueError` naming the count and first example if `images` (with a
    leading example axis) contains NaN or ±inf."""
    bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{what}: {int(bad.sum())} of {len(images)} images contain NaN or "
            f"infinite values (first at index {int(np.argmax(bad))}). Remove or "
            "repair those examples before loading them; non-finite inputs would "
            "make every equilibrium and gradient NaN."
        )


class ArraySource(Source):
    """A source over images and labels held in memory (already normalised)."""

    def __init__(self, images, labels, num_classes, name, split):
        self._images = images
        self._labels = labels
        self.num_classes = int(num_classes)
        self.name = name
        self.split = split
        self.image_shape = tuple(int(s) for s in images.shape[1:])

    def __len__(self) -> int:
        return len(self._labels)

    def get(self, indices):
        indices = self._check_indices(indices)
        return self._images[indices], self._labels[indices]

    @property
    def images(self) -> np.ndarray:
        """All images, `(N, H, W, C)` float32 (a read-only view)."""
        view = self._images.view()
        view.flags.writeable = False
        return view

    @property
    def labels(self) -> np.ndarray:
        """All labels, `(N,)` int32 (a read-only view)."""
        view = self._labels.view()
        view.flags.writeable = False
        return view


def from_arrays(
    images,
    labels,
    *,
    num_classes: int | None = None,
    name: str = "arrays",
    split: str = "train",
) -> Source:
    """Wrap your own images and labels as a [`holoode.data.Source`][].

    The arrays are used as given (no normalisation is applied); they are copied
    to float32 and int32.

    **Arguments:**

    - `images`: `(N, H, W, C)` images, or `(N, H, W)` (a channel axis of size 1
      is added). Every value must be finite: NaN or ±inf raise `ValueError`
      naming how many images are affected and the first index.
    - `labels`: `(N,)` integer class labels in `[0, num_classes)`.
    - `num_classes`: the number of classes; defaults to `max(labels) + 1`.
    - `name`, `split`: labels shown in messages and metrics.

    **Returns:**

    An in-memory `Source`.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(
            "from_arrays(images=...) needs shape (N, H, W, C) or (N, H, W), got "
            f"{images.shape}; reshape flat vectors with e.g. "
            "`images.reshape(-1, 8, 8, 1)`."
        )
    if not (
        np.issubdtype(images.dtype, np.floating)
        or np.issubdtype(images.dtype, np.integer)
        or images.dtype == np.bool_
    ):
        raise ValueError(
            f"from_arrays(images=...) needs real numbers, got dtype {images.dtype}."
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"from_arrays(labels=...) needs shape ({len(images)},) to match the "
            f"{len(images)} images, got {labels.shape}."
        )
    if len(labels) == 0:
        raise ValueError("from_arrays() got no examples (N = 0).")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(
            np.isfinite(labels) & (labels == np.round(labels))
        ):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(
                f"from_arrays(labels=...) needs integer class labels, got dtype "
                f"{labels.dtype}; one-hot targets should be converted with "
                "`labels.argmax(-1)`."
            )
    images = images.astype(np.float32)
    check_finite(images, f"from_arrays(name={name!r})")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    num_classes = int(num_classes)
    bad = (labels < 0) | (labels >= num_classes)
    if num_classes < 1 or bad.any():
        first = int(np.argmax(bad)) if bad.any() else 0
        raise ValueError(
            "from_arrays(labels=...): labels must lie in "
            f"[0, num_classes={num_classes}); {int(bad.sum())} do not (first: "
            f"labels[{first}] = {labels[first]}). "
            "Pass the right `num_classes=` or remap the labels to 0..K-1."
        )
    return ArraySource(images, labels.astype(np.int32), num_classes, name, split)
