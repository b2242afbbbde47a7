"""The circle of holomorphic EP: its points, the Fourier weights that turn values
on it into harmonics, and the decay of the state's harmonics that measures the
radius of analyticity. Shared by `holoode.HolomorphicEP` and the stability
diagnostics.

On the circle `β_k = ρ e^{iφ_k}`, `φ_k = 2πk/N`, the harmonics of a function
`g(β)` are `c_m = (1/N) Σ_{k<N} g(β_k) e^{−imφ_k}`. For real parameters
`g(β̄) = conj g(β)` (states, learning signals), so only the `⌊N/2⌋ + 1` points of
the upper half are ever solved; the others are their conjugates.
"""

import math

import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, PyTree

from ._misc import eps


def circle_points(radius: ArrayLike, num_points: int) -> Array:
    """The points `ρ e^{2πik/N}`, `k = 0 … ⌊N/2⌋`, of the upper half of the circle
    of radius `ρ` with `N` points (complex)."""
    k = jnp.arange(num_points // 2 + 1)
    return radius * jnp.exp(2j * jnp.pi * k / num_points)


def harmonic_weights(num_points: int, harmonics, dtype) -> Array:
    """Weights `w_mk`, shaped `(len(harmonics), ⌊N/2⌋ + 1)`, with
    `c_m = Re Σ_k w_mk g_k` over the points of the upper half only.

    The full sum is `c_m = (1/N) Σ_{k<N} g_k e^{−imφ_k}`. With `g_{N−k} = conj g_k`,
    each point `0 < k < N/2` stands for its conjugate partner too and gets weight
    `2 e^{−imφ_k}/N`; the points `k = 0` and `k = N/2` (on the real axis) get
    `e^{−imφ_k}/N`.
    """
    n = num_points
    k = jnp.arange(n // 2 + 1)
    phi = 2 * jnp.pi * k / n
    paired = (k > 0) & (2 * k != n)
    mult = jnp.where(paired, 2.0, 1.0) / n
    m = jnp.asarray(harmonics)[:, None]
    return (mult * jnp.exp(-1j * m * phi)).astype(dtype)


def flatten_states(states: PyTree[Array], lead: int) -> Array:
    """The leaves of a state PyTree concatenated into vectors, keeping `lead`
    leading axes (e.g. `(batch, points)`)."""
    leaves = jtu.tree_leaves(states)
    return jnp.concatenate(
        [a.reshape(a.shape[:lead] + (-1,)) for a in leaves], axis=lead
    )


def full_circle(half: Array, num_points: int) -> Array:
    """All `N` points of a circle (axis 1) from the `⌊N/2⌋ + 1` of its upper half,
    by conjugate symmetry."""
    lower = jnp.conj(half[:, 1 : (num_points + 1) // 2][:, ::-1])
    return jnp.concatenate([half, lower], axis=1)


def harmonic_norms(circle: Array, num_points: int, harmonics) -> list[Array]:
    """The norms `‖d_m‖` of the harmonics of states on a whole circle, shaped
    `(batch, N, size)`: one `(batch,)` array per harmonic `m`."""
    phi = 2 * jnp.pi * jnp.arange(num_points) / num_points
    norms = []
    for m in harmonics:
        weights = (jnp.exp(-1j * m * phi) / num_points).astype(circle.dtype)
        d = jnp.einsum("k,bkd->bd", weights, circle)
        norms.append(jnp.linalg.norm(d, axis=-1))
    return norms


def noise_floor(solver, u_free: Array) -> Array:
    """The size of the harmonics that the equilibria's own tolerance leaves, per
    example (`u_free`: the flattened free states, `(batch, size)`).

    A solver stopping on its step size leaves errors of several times its
    tolerance, hence the factor 10 on `(100 ε + rtol) ‖u‖ + atol √size`."""
    rtol, atol = solver.tolerances(u_free)
    norm = jnp.linalg.norm(u_free, axis=-1)
    size = u_free.shape[-1]
    return 10 * ((100 * eps(u_free.dtype) + rtol) * norm + atol * math.sqrt(size))


def decay_ratio(low: Array, high: Array, floor: Array, gap: int) -> tuple[Array, Array]:
    """The decay per harmonic, `q = (‖d_high‖/‖d_low‖)^{1/gap}`, of two harmonic
    norms `gap` apart, judged against the noise `floor`.

    Inside the disc of analyticity `‖d_m‖ ≈ C (ρ/R)^m`, so `q` estimates `ρ/R`.
    Returns `(q, resolved)`. A norm within 10× of the floor carries no
    information: where `‖d_low‖` is below it, `q` is 0 if `‖d_high‖` is too (the
    state does not respond to β above the noise) and `inf` otherwise (a large
    aliased harmonic without a first one: the circle is far outside the disc,
    never report that as safe). `resolved` is `False` where either norm is
    within 10× of the floor; `q` is then only an upper bound.
    """
    ratio = (jnp.maximum(high, floor) / jnp.maximum(low, floor)) ** (1 / gap)
    ratio = jnp.where(
        low > 10 * floor, ratio, jnp.where(high > 10 * floor, jnp.inf, 0.0)
    )
    return ratio, (low > 10 * floor) & (high > 10 * floor)
