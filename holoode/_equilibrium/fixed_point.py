"""Equilibria by damped fixed-point iteration of the dynamics."""

import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx

from .._misc import tree_rms
from .base import AbstractEquilibriumSolver, optimistix_solve


def _default_float_rms(tree):
    # Optimistix starts its error at `jnp.array(inf)`, in the default float dtype
    # (float64 when x64 is enabled); keep the loop's state dtype fixed for float32
    # states too.
    return tree_rms(tree).astype(jnp.result_type(float))


class FixedPointIteration(AbstractEquilibriumSolver):
    """Iterate `u ← u + η f(u)` until successive states agree to tolerance.

    For a primitive-form model with `η = 1` this is the synchronous update
    `u ← σ(∂Φ/∂u − β ∂C/∂u)` of Laborieux & Zenke (2022); for an energy-form model
    it is gradient descent on `F` with step `η`. It converges linearly, with rate the
    spectral radius `ρ` of the map's Jacobian; it diverges if `ρ > 1`.

    Caveat: the stopping test bounds the *step*, and the distance to the equilibrium
    is about `step / (1 − ρ)`: for slowly contracting maps, tighten the tolerance.

    **Arguments:**

    - `step_size`: `η` (default 1).
    - `rtol`, `atol`: tolerances on successive iterates (`None`: dtype default).
    - `max_steps`: at most this many iterations.
    - `split_complex`: solve complex states as real pairs `(Re u, Im u)`.
    """

    step_size: float = 1.0
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 10_000
    split_complex: bool = False

    def solve(self, vector_field, u0, *, differentiable):
        rtol, atol = self.tolerances(u0)

        def update(u, f):
            return jtu.tree_map(lambda a, b: a + self.step_size * b, u, f(u))

        return optimistix_solve(
            optx.fixed_point,
            update,
            optx.FixedPointIteration(rtol=rtol, atol=atol, norm=_default_float_rms),
            vector_field,
            u0,
            split_complex=self.split_complex,
            max_steps=self.max_steps,
            differentiable=differentiable,
        )
