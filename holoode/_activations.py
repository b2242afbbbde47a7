"""Holomorphic activation functions.

Each activation is an entire or meromorphic function that is real on the real
axis. Its poles bound how far the state may move into the complex plane, and so
how large `|β|` may be (see `holoode.HolomorphicEP`).
"""

import jax.numpy as jnp
from jaxtyping import Array, Inexact


def shifted_sigmoid(z: Inexact[Array, "..."]) -> Array:
    """The shifted sigmoid `1 / (1 + exp(−4z + 2))` of Laborieux & Zenke (2022).

    Maps the real line onto (0, 1) with `σ(0.5) = 0.5` and slope 1 there. Poles at
    `z = 1/2 + iπ(2k + 1)/4`, k ∈ ℤ: the nearest lie at distance π/4 ≈ 0.785 from
    the real axis.
    """
    return 1.0 / (1.0 + jnp.exp(-4.0 * z + 2.0))


def identity(z: Inexact[Array, "..."]) -> Array:
    """The identity (linear units). Entire: no poles."""
    return z
