"""Equilibria by damped fixed-point iteration of the dynamics."""

import equinox as eqx
import optimistix as optx

from .._misc import as_int
from .anderson import FixedPointLoop
from .batch_loop import AbstractIteratedMap


class FixedPointIteration(AbstractIteratedMap):
    """Iterate `u ← u + η f(u)` until successive states agree to tolerance.

    For a primitive-form model with `η = 1` this is the synchronous update
    `u ← σ(∂Φ/∂u − β ∂C/∂u)` of Laborieux & Zenke (2022); for an energy-form model
    it is gradient descent on `F` with step `η`. It converges linearly, with rate the
    spectral radius `ρ` of the map's Jacobian; it diverges if `ρ > 1`.

    Tolerances bound the *distance* to the equilibrium, not the step: the distance
    after a step `s` is about `‖s‖ ρ/(1 − ρ)`, many times the step for slowly
    contracting maps, so the iteration measures `ρ` from its last few steps and
    stops when `‖s‖/(1 − ρ)` is within `atol + rtol |u|` (see
    `holoode.AndersonAcceleration`, of which this is the `memory = 1` case).

    A map that does not contract (`ρ ≥ 1`: a two-cycle of the synchronous update,
    or gradient descent with too long a step) makes the measured rate stall at 1;
    the iteration then halves its step, `u ← u + (η/2^j) f(u)`, down to `η/64`,
    and measures the rate afresh. So the default `η = 1` (the synchronous update
    of the primitive form) also solves energy-form models whose gradient-descent
    step must be shorter, at the price of the steps spent detecting the cycle.

    **Arguments:**

    - `step_size`: `η` (default 1).
    - `rtol`, `atol`: tolerances on the distance to the equilibrium (`None`: dtype
      default).
    - `max_steps`: at most this many iterations.
    - `split_complex`: solve complex states as real pairs `(Re u, Im u)`.
    """

    step_size: float = 1.0
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=10_000, converter=as_int)
    split_complex: bool = False

    def _loop(self, u0):
        rtol, atol = self.tolerances(u0)
        return FixedPointLoop(rtol=rtol, atol=atol, norm=optx.rms_norm, memory=1)
