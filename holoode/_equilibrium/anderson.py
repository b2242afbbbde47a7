"""Equilibria by Anderson-accelerated fixed-point iteration."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Inexact, Int, PyTree, Scalar

from .._misc import real_dtype, tree_rms
from .base import AbstractEquilibriumSolver, optimistix_solve


class _AndersonState(eqx.Module):
    values: Inexact[Array, "memory n"]  # g(u_i) for the last `memory` iterates
    residuals: Inexact[Array, "memory n"]  # r_i = g(u_i) − u_i, newest first
    gram: Inexact[Array, "memory memory"]  # r_iᴴ r_j
    count: Int[Array, ""]  # iterates seen so far
    relative_error: Scalar  # scaled size of the last residual (< 1: converged)


class _Anderson(optx.AbstractFixedPointSolver):
    """Anderson mixing for a fixed point `u = g(u)`, in Optimistix's protocol.

    Keeps the last `memory` iterates' values `g_i = g(u_i)` and residuals
    `r_i = g_i − u_i` (flattened into vectors), and steps to `Σ α_i g_i` with the
    coefficients `α` minimising `‖Σ α_i r_i‖₂` subject to `Σ α_i = 1`:
    `α ∝ (RᴴR + λI)⁻¹ 1`, `R = [r_1 ... r_m]`. Conjugate transposes make this the
    complex least-squares problem for complex states (the coefficients are then
    complex). Stops when `norm((u − g(u)) / (atol + rtol |g(u)|)) < 1` and returns
    the last `g(u)`, the criterion and value of `optx.FixedPointIteration`.
    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar] = tree_rms
    memory: int = 5
    regularisation: float = 1e-8

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del fn, args, options, f_struct, aux_struct, tags
        flat, _ = jfu.ravel_pytree(y)
        history = jnp.zeros((self.memory, flat.size), flat.dtype)
        return _AndersonState(
            values=history,
            residuals=history,
            gram=jnp.zeros((self.memory, self.memory), flat.dtype),
            count=jnp.array(0),
            relative_error=jnp.array(jnp.inf, real_dtype(flat.dtype)),
        )

    def step(self, fn, y, args, options, state, tags):
        del options, tags
        flat_y, unravel = jfu.ravel_pytree(y)
        g, aux = fn(y, args)
        flat_g, _ = jfu.ravel_pytree(g)
        r = flat_g - flat_y
        with jax.numpy_dtype_promotion("standard"):
            scale = self.atol + self.rtol * jnp.abs(flat_g)
        error = self.norm(-r / scale).astype(state.relative_error.dtype)

        # Newest first: shift the history (no scatter at a batched slot index) and
        # update the Gram matrix A_ij = r_iᴴ r_j with the new row and column only.
        m = self.memory
        old = state.residuals[:-1]
        values = jnp.concatenate([flat_g[None], state.values[:-1]])
        residuals = jnp.concatenate([r[None], old])
        cross = jnp.sum(jnp.conj(old) * r, axis=-1)  # r_iᴴ r_new, i = 1..m−1
        first = jnp.concatenate(
            [jnp.sum(jnp.conj(r) * r, keepdims=True), jnp.conj(cross)]
        )
        gram = jnp.concatenate(
            [first[None], jnp.concatenate([cross[:, None], state.gram[:-1, :-1]], 1)]
        )

        # Unused slots get an identity block and a zero right-hand side, so their
        # coefficients are exactly zero.
        used = jnp.arange(m) <= state.count
        both = used[:, None] & used[None, :]
        masked = jnp.where(both, gram, 0)
        size = jnp.max(jnp.where(used, jnp.real(jnp.diagonal(masked)), 0))
        size = jnp.where(size > 0, size, 1)
        shift = jnp.where(used, self.regularisation * size, 1).astype(gram.dtype)
        z = jnp.linalg.solve(masked + jnp.diag(shift), used.astype(gram.dtype))
        alpha = z / jnp.sum(z)
        mixed = jnp.sum(alpha[:, None] * values, axis=0)
        # A degenerate history (non-finite coefficients) falls back to a plain step.
        ok = jnp.all(jnp.isfinite(alpha))
        converged = error < 1
        new_flat = jnp.where(converged | ~ok, flat_g, mixed)
        new_state = _AndersonState(
            values=values,
            residuals=residuals,
            gram=gram,
            count=state.count + 1,
            relative_error=error,
        )
        return unravel(new_flat), new_state, aux

    def terminate(self, fn, y, args, options, state, tags):
        del fn, y, args, options, tags
        return state.relative_error < 1, optx.RESULTS.successful

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, state, tags, result
        return y, aux, {}


class AndersonAcceleration(AbstractEquilibriumSolver):
    """Fixed-point iteration of `u ← u + η f(u)`, accelerated by Anderson mixing.

    Plain fixed-point iteration (`holoode.FixedPointIteration`) converges like
    `ρⁿ`, `ρ` the spectral radius of the map's Jacobian. Anderson acceleration
    (type II, as in Walker & Ni, 2011) remembers the last `m = memory` iterates
    `u_i`, their images `g_i = u_i + η f(u_i)` and residuals `r_i = g_i − u_i`, and
    steps to

        u_{k+1} = Σ_i α_i g_i,   α = argmin ‖Σ_i α_i r_i‖₂  subject to  Σ_i α_i = 1,

    solved as `α ∝ (RᴴR + λ‖R‖²_max I)⁻¹ 1` with `R = [r_1 ... r_m]`. Near the
    equilibrium this is a GMRES-like Krylov method on the linearised map. Each
    iteration costs one evaluation of `f` plus `O(m n)` work on the flattened state
    (`n` entries) and one `m × m` solve. Real and complex states are handled alike:
    for complex states the least-squares problem uses conjugate transposes and the
    coefficients `α` are complex, which is the natural choice for a field that is
    holomorphic in `u`.

    It stops when the step is small, `rms((u − g(u)) / (atol + rtol |g(u)|)) < 1`
    (the criterion of `holoode.FixedPointIteration`), and returns `g(u)`.

    When it pays: the fewer iterations must outweigh the extra work per iteration.
    On the MNIST-sized Hopfield MLP of `benchmarks/core_speed.py` (float32, CPU,
    plain iteration contracting by about 0.6 per step) it needs 30–45% fewer
    iterations than `holoode.FixedPointIteration` at the same tolerance, but each
    iteration costs about 1.5× as much, so the two are about equally fast there;
    the gain grows as plain iteration contracts more slowly (about 4× fewer
    iterations at a contraction of about 0.96 per step) and as the field becomes
    more expensive relative to the `O(m n)` bookkeeping.

    Caveats: unlike plain iteration Anderson mixing is not monotone, and it is not
    globally convergent: far from an equilibrium (or where `u ← u + η f(u)` is not
    a contraction) it can wander. Reduce `step_size` or `memory`, or start from a
    better state. In float32 the attainable tolerance is limited by round-off
    (about `2e-8` relative for states of order one), as for plain iteration; below
    it the solve stagnates and stops at `max_steps`. The Gram matrix `RᴴR` squares
    the conditioning of the history:
    `regularisation` (relative to the largest `‖r_i‖²`) keeps the small solve
    well-posed, and its default suits float32 as well as float64. Gradients through
    the solve (backpropagation through time) go through the mixing coefficients as
    well; with `differentiable=False` Optimistix's implicit adjoint is used.

    **Arguments:**

    - `rtol`, `atol`: tolerances on successive iterates (`None`: dtype default).
    - `max_steps`: at most this many iterations.
    - `memory`: `m`, the number of past iterates mixed (`m = 1` is plain
      fixed-point iteration).
    - `step_size`: `η` in the map `u + η f(u)` (default 1: for a primitive-form model
      the synchronous update `u ← σ(∂(Φ − βC)/∂u)`).
    - `regularisation`: Tikhonov shift `λ` of the least-squares problem, relative to
      the largest squared residual norm in the history.
    - `split_complex`: solve complex states as real pairs `(Re u, Im u)` (the
      coefficients are then real).
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 1000
    memory: int = 5
    step_size: float = 1.0
    regularisation: float = 1e-8
    split_complex: bool = False

    def __check_init__(self):
        if not isinstance(self.memory, int) or self.memory < 1:
            raise ValueError(
                "AndersonAcceleration(memory=...) must be an integer ≥ 1, got "
                f"{self.memory!r}."
            )

    def solve(self, vector_field, u0, *, differentiable):
        rtol, atol = self.tolerances(u0)

        def update(u, f):
            return jax.tree_util.tree_map(lambda a, b: a + self.step_size * b, u, f(u))

        solver = _Anderson(
            rtol=rtol,
            atol=atol,
            norm=tree_rms,
            memory=self.memory,
            regularisation=self.regularisation,
        )
        return optimistix_solve(
            optx.fixed_point,
            update,
            solver,
            vector_field,
            u0,
            split_complex=self.split_complex,
            max_steps=self.max_steps,
            differentiable=differentiable,
        )
