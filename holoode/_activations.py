"""Holomorphic activation functions.

Each activation is an entire or meromorphic function (or, for `hard_tanh`, one
with isolated logarithmic branch points) that is real on the real axis. Its
singularities bound how far the state may move into the complex plane, and so
how large `|β|` may be (see `holoode.HolomorphicEP` and `holoode.safe_beta`).

**Writing your own.** Any elementwise function built only from holomorphic
`jax.numpy` operations works: `+ − × /`, integer powers, `exp`, `log`, `tanh`,
`sin`, `cos`, ... Avoid `abs`, `conj`, `real`/`imag`, `maximum`/`minimum`,
`clip`, `where` on the argument's value and `relu`: they are not holomorphic,
and holomorphic EP would return a wrong gradient without any other sign. Then
check the model numerically:

```python
def softsign_like(z):  # = z / sqrt(1 + z²); branch points at z = ±i
    return z / jnp.sqrt(1 + z**2)

model = holoode.nn.HopfieldMLP(sizes, key=key, activation=softsign_like)
holoode.check_holomorphic(model, x[0], y[0], cost=holoode.CrossEntropy())
```

Note where its poles or branch points are: the nearest one's distance from the
real axis limits the safe `|β|`. For a fixed point of the primitive form to be
a stationary point of an energy, the activation should also be strictly
increasing on the real axis (so that `σ⁻¹` and `G` exist).
"""

import jax
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


def softplus(w: Inexact[Array, "..."]) -> Array:
    """Holomorphic softplus `log(1 + exp(w))` on the principal branch, overflow-free.

    Evaluated as `s + log(exp(−s) + exp(w − s))` with `s = Re w` held constant
    under differentiation where `Re w > 0` (multiplying by the positive real
    `exp(−s)` leaves the argument of `1 + eʷ` unchanged, so this is exactly the
    principal `log(1 + eʷ)`), and as `log1p(eʷ)` elsewhere (accurate when `eʷ` is
    tiny). Both formulas are the same function, so the switch is no seam; the
    derivative is the logistic sigmoid. Logarithmic branch points at
    `w = iπ(2k + 1)`, with the principal cuts running from each of them to
    `Re w = +∞` along `Im w = π(2k + 1)`; holomorphic in the strip `|Im w| < π`.
    """
    right = jnp.real(w) > 0
    s = jax.lax.stop_gradient(jnp.where(right, jnp.real(w), 0.0)).astype(w.dtype)
    # The unused branch gets a harmless argument, so that its derivative is finite.
    w_left = jnp.where(right, jnp.zeros_like(w), w)
    return jnp.where(
        right, s + jnp.log(jnp.exp(-s) + jnp.exp(w - s)), jnp.log1p(jnp.exp(w_left))
    )


def hard_tanh(z: Inexact[Array, "..."], sharpness: float = 4.0) -> Array:
    """A holomorphic hard-tanh: `clip(z, −1, 1)` with its corners smoothed.

    Built from two smooth steps (softplus ramps) of sharpness `k`:

        h(z) = (1/k) [log(1 + e^{k(z+1)}) − log(1 + e^{k(z−1)})] − 1.

    On the real axis it is strictly increasing from −1 to 1, odd, and
    `|h(z) − clip(z, −1, 1)| ≤ log(2)/k` everywhere, with the worst case at the
    corners `z = ±1`; at distance `d` from the corners the error is below
    `e^{−kd}/k`. Its derivative `σ(k(z+1)) − σ(k(z−1))` (σ the logistic sigmoid)
    is a smooth box of width 2 and height `tanh(k/2)`.

    Singularities: logarithmic branch points at `z = ±1 + iπ(2m + 1)/k`, m ∈ ℤ
    (the derivative has simple poles there); the nearest lie at distance `π/k`
    from the real axis (π/4 ≈ 0.785 for the default `k = 4`, the same as
    `holoode.shifted_sigmoid`). The cuts of the two logarithms cancel for
    `Re z > 1`, so the function is holomorphic in the strip `|Im z| < π/k` and
    outside the segments `−1 ≤ Re z ≤ 1, Im z = ±π(2m + 1)/k`.

    Sharper corners (larger `k`) approximate the clip better but move the
    singularities closer to the real axis, shrinking the safe `|β|`. (The
    convnets of Laborieux & Zenke (2022) used a smooth clip with much softer
    corners, of sharpness about 1 on the same scale.) Choose `k` with
    `functools.partial(holoode.hard_tanh, sharpness=8.0)`.
    """
    k = jnp.asarray(sharpness, dtype=jnp.real(z).dtype)
    return (softplus(k * (z + 1)) - softplus(k * (z - 1))) / k - 1
