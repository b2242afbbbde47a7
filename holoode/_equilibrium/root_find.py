"""Equilibria by Optimistix root finding (Newton by default)."""

import equinox as eqx
import optimistix as optx

from .._misc import as_int
from .base import AbstractEquilibriumSolver, optimistix_solve


class RootFind(AbstractEquilibriumSolver):
    """Solve `f(u) = 0` with an Optimistix root finder.

    The default is Newton's method with a dense LU solve of the Jacobian: quadratic
    convergence, the most exact choice for small and medium states (the Jacobian
    costs one JVP per state entry). It converges to the equilibrium nearest the warm
    start, which need not be the one the dynamics would reach from `init_state`:
    for the free phase of a non-convex network prefer `holoode.SteadyStateODE`.

    **Arguments:**

    - `rtol`, `atol`: tolerances (`None`: the dtype's default).
    - `max_steps`: at most this many iterations.
    - `split_complex`: solve complex states as real pairs `(Re u, Im u)`.
    - `solver`: an `optx.AbstractRootFinder` to use instead of Newton, e.g.
      `optx.Chord(rtol, atol)`. Its own tolerances then apply, and `tolerances`
      (from which the diagnostics judge what is noise) reports them; leave
      `rtol`/`atol` of `RootFind` at `None`.
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=256, converter=as_int)
    split_complex: bool = False
    solver: optx.AbstractRootFinder | None = None

    def __check_init__(self):
        if self.solver is not None and (self.rtol, self.atol) != (None, None):
            raise ValueError(
                "RootFind(rtol=..., atol=..., solver=...): with a `solver` its own "
                "tolerances apply; set them there, e.g. "
                "`RootFind(solver=optx.Chord(rtol=1e-6, atol=1e-6))`."
            )

    def tolerances(self, u0):
        if self.solver is None:
            return super().tolerances(u0)
        return self.solver.rtol, self.solver.atol

    def solve(self, vector_field, u0, *, differentiable):
        if self.solver is None:
            rtol, atol = self.tolerances(u0)
            solver = optx.Newton(rtol=rtol, atol=atol, norm=optx.rms_norm)
        else:
            solver = self.solver
        return optimistix_solve(
            optx.root_find,
            lambda u, f: f(u),
            solver,
            vector_field,
            u0,
            split_complex=self.split_complex,
            max_steps=self.max_steps,
            differentiable=differentiable,
        )
