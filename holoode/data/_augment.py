"""The CIFAR augmentation: random crop with zero padding and horizontal flip."""

import numpy as np


def crop_flip(
    images: np.ndarray,
    offsets: np.ndarray,
    flips: np.ndarray,
    *,
    padding: int = 4,
    fill=0.0,
) -> np.ndarray:
    """Crop each padded image at a given offset, then flip some of them.

    Image `b` is padded with `padding` pixels of value `fill` on every side of
    its height and width axes, the `(H, W)` window whose top-left corner is
    `offsets[b] = (i, j)` (`0 ≤ i, j ≤ 2·padding`) is cut out, and it is
    mirrored left-right if `flips[b]`. Offset `(padding, padding)` without a
    flip is the identity.

    The padding is applied to normalised images; `Loader` passes the source's
    `fill`, the normalised value of a black pixel, so that the result equals
    padding the raw image with zeros and then normalising (as the paper's code
    does).

    **Arguments:**

    - `images`: `(B, H, W, C)`.
    - `offsets`: `(B, 2)` integers in `[0, 2·padding]`.
    - `flips`: `(B,)` booleans.
    - `padding`: pixels added on each side.
    - `fill`: the value of the added pixels, a scalar or one per channel.

    **Returns:**

    The augmented images, `(B, H, W, C)`, same dtype.
    """
    images = np.asarray(images)
    b, h, w, _ = images.shape
    offsets = np.asarray(offsets)
    if offsets.shape != (b, 2) or offsets.min(initial=0) < 0:
        raise ValueError(f"offsets must be (B, 2) = ({b}, 2) non-negative integers.")
    if offsets.max(initial=0) > 2 * padding:
        raise ValueError(f"offsets must lie in [0, 2*padding] = [0, {2 * padding}].")
    fill = np.broadcast_to(np.asarray(fill, images.dtype), images.shape[-1:])
    shape = (b, h + 2 * padding, w + 2 * padding, images.shape[-1])
    padded = np.empty(shape, images.dtype)
    padded[...] = fill
    padded[:, padding : padding + h, padding : padding + w] = images
    rows = offsets[:, 0, None] + np.arange(h)
    cols = offsets[:, 1, None] + np.arange(w)
    # Mirroring the column indices flips the window in the same gather.
    cols = np.where(np.asarray(flips, bool)[:, None], cols[:, ::-1], cols)
    batch = np.arange(b)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


def random_crop_flip(
    images: np.ndarray, rng: np.random.Generator, *, padding: int = 4, fill=0.0
) -> np.ndarray:
    """The paper's CIFAR augmentation: [`holoode.data.crop_flip`][] with offsets
    drawn uniformly from `{0, …, 2·padding}²` and each image flipped with
    probability 1/2, all drawn from `rng`."""
    b = len(images)
    offsets = rng.integers(0, 2 * padding + 1, size=(b, 2))
    flips = rng.random(b) < 0.5
    return crop_flip(images, offsets, flips, padding=padding, fill=fill)
