"""Holomorphic pooling: a softmax-weighted window average instead of max pooling."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact


def pooled_size(size: int, window: int, stride: int) -> int:
    """Output length of a 'VALID' pooling of `size` entries (remainders dropped)."""
    return (size - window) // stride + 1


def _windows(x: Array, window: int, stride: int) -> Array:
    """The pooling windows of `x` `(C, H, W)`, shaped `(C, H', W', window²)`.

    With `stride == window` this is a crop and a reshape; otherwise a gather with
    static index arrays. Both are linear, so holomorphic, and neither loops over
    pixels in Python.
    """
    c, h, w = x.shape
    ho, wo = pooled_size(h, window, stride), pooled_size(w, window, stride)
    if stride == window:
        x = x[:, : ho * window, : wo * window]
        x = x.reshape(c, ho, window, wo, window)
        return x.transpose(0, 1, 3, 2, 4).reshape(c, ho, wo, window * window)
    rows = np.arange(ho)[:, None] * stride + np.arange(window)[None, :]
    cols = np.arange(wo)[:, None] * stride + np.arange(window)[None, :]
    patches = x[:, rows[:, None, :, None], cols[None, :, None, :]]
    return patches.reshape(c, ho, wo, window * window)


def softmax_pool(
    x: Inexact[Array, "channels height width"],
    window: int = 2,
    stride: int | None = None,
    temperature: float = 1.0,
) -> Array:
    """Softmax pooling: the holomorphic replacement of max pooling.

    Each output is the average of its window weighted by a softmax of the values,

        P(x) = Σ_i x_i e^{x_i/T} / Σ_i e^{x_i/T},

    as in Laborieux & Zenke (2022). On real inputs it lies between the window's
    mean and its maximum, at most `T · log(window²)` below the maximum (the
    softmax's entropy times `T`): it tends to max pooling as `T → 0` and to average
    pooling as `T → ∞`. Windows are 'VALID': rows and columns that do not fill a
    window are dropped.

    Holomorphic wherever the partition sum `Σ_i e^{x_i/T}` of every window is
    non-zero: these zeros are its poles. They need a spread of imaginary parts
    within one window: if the values `Im(x_i)/T` of a window lie in an interval
    shorter than π, the terms `e^{x_i/T}` lie in an open half-plane and cannot
    cancel. So `P` is holomorphic while the imaginary parts within each window
    differ by less than `πT` (for two entries the nearest pole is at exactly
    `x_1 − x_2 = ±iπT`). A smaller temperature is closer to max pooling but
    shrinks this domain, and so the safe `|β|`.

    The largest real part per window is subtracted before `exp` and held constant
    under differentiation; it cancels exactly between numerator and denominator,
    so it only prevents overflow.

    **Arguments:**

    - `x`: a channel-first image `(C, H, W)`, real or complex.
    - `window`: the side of the square window.
    - `stride`: the step between windows (default `window`: non-overlapping).
    - `temperature`: `T > 0`.

    **Returns:** an array `(C, H', W')` with `H' = (H − window) // stride + 1`.
    """
    stride = window if stride is None else stride
    if x.ndim != 3:
        raise ValueError(
            "softmax_pool expects a channel-first image (C, H, W), got shape "
            f"{x.shape}."
        )
    if window < 1 or stride < 1 or min(x.shape[1:]) < window:
        raise ValueError(
            f"softmax_pool(window={window}, stride={stride}) does not fit an image of "
            f"shape {x.shape}: need 1 ≤ window ≤ min(H, W) and stride ≥ 1."
        )
    if not temperature > 0:
        raise ValueError(
            f"softmax_pool(temperature=...) must be positive, got {temperature!r}."
        )
    patches = _windows(x, window, stride)
    scaled = patches / jnp.asarray(temperature, jnp.real(x).dtype)
    shift = jax.lax.stop_gradient(jnp.max(jnp.real(scaled), axis=-1, keepdims=True))
    weights = jnp.exp(scaled - shift.astype(scaled.dtype))
    return jnp.sum(patches * weights, axis=-1) / jnp.sum(weights, axis=-1)
