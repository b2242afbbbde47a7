"""Equilibria by Anderson-accelerated fixed-point iteration."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Inexact, Int, PyTree, Scalar

from .._misc import as_int, eps, real_dtype
from .batch_loop import AbstractIteratedMap


# How many past step sizes the convergence-rate estimate keeps: it measures over
# an even span (6 steps), so that a step size alternating with period two (a
# two-cycle, or the ± eigenvalue pairs of a layered network) does not bias it.
_RATE_WINDOW = 7
# Largest convergence rate believed: caps the distance factor 1/(1 − q) at 1000.
_MAX_RATE = 0.999
# Anderson mixing that has not halved its step in this many iterations has
# stalled (on real data it then wanders for thousands of steps without
# converging); it stops so that the free-phase fallback to the dynamics takes
# over (see `holoode._equilibrium.batched.solve_free`).
_PATIENCE = 150
# A step within this many ε (relative to the value) is at the level of round-off.
_ROUNDOFF = 64


def _gram_shift(regularisation: float, dtype) -> float:
    """Tikhonov shift of the normal equations: at least `10 ε` of the dtype, so
    that the shifted Gram matrix stays invertible in that dtype."""
    return max(regularisation, 10 * float(eps(dtype)))


def _real_rows(v: Inexact[Array, "*k n"]) -> Float[Array, "*k m"]:
    """A complex vector as the real vector `(Re v, Im v)` (`m = 2n`); real ones
    as they are. The histories are kept in this form: on CPU, XLA's complex
    products are slower than the real products they amount to."""
    if not jnp.iscomplexobj(v):
        return v
    return jnp.concatenate([v.real, v.imag], axis=-1)


def _inner(
    rows: Float[Array, "k m"], *vs: Inexact[Array, " n"]
) -> tuple[Inexact[Array, " k"], ...]:
    """`aᴴ v` for the vectors `a` stored as `_real_rows`, for each `v` of `vs`:
    for complex vectors in one real product (one pass over `rows`)."""
    if not jnp.iscomplexobj(vs[0]):
        return tuple(rows @ v for v in vs)
    columns = []
    for v in vs:  # Re aᴴv = Re a·Re v + Im a·Im v, Im aᴴv = Re a·Im v − Im a·Re v
        columns += [_real_rows(v), jnp.concatenate([v.imag, -v.real])]
    out = rows @ jnp.stack(columns, axis=1)
    return tuple(
        jax.lax.complex(out[:, j], out[:, j + 1]) for j in range(0, len(columns), 2)
    )


def _combine(
    coefficients: Inexact[Array, " k"], rows: Float[Array, "k m"], like: Array
) -> Inexact[Array, " n"]:
    """`Σ_j γ_j a_j` for the vectors `a` stored as `_real_rows`, in the dtype of
    `like`, in one real product."""
    if not jnp.iscomplexobj(like):
        return coefficients @ rows
    n = like.shape[0]
    out = jnp.stack([coefficients.real, coefficients.imag]) @ rows
    return jax.lax.complex(out[0, :n] - out[1, n:], out[0, n:] + out[1, :n])


class FixedPointLoopState(eqx.Module):
    value: Inexact[Array, " n"]  # g(u) of the previous iterate
    residual: Inexact[Array, " n"]  # r = g(u) − u of the previous iterate
    # ΔG: g_i − g_{i−1} and ΔR: r_i − r_{i−1}, newest first, as `_real_rows`.
    value_differences: Float[Array, "memory-1 m"]
    residual_differences: Float[Array, "memory-1 m"]
    gram: Inexact[Array, "memory-1 memory-1"]  # ΔRᴴ ΔR, kept up to date row by row
    amplification: Scalar  # the largest ‖ΔU_i‖/‖ΔR_i‖ seen, ΔU = ΔG − ΔR
    count: Int[Array, ""]  # iterates seen so far
    steps: Float[Array, " window"]  # scaled step sizes, newest first
    damping: Scalar  # plain iteration only: the fraction of each step taken
    smallest: Scalar  # plain iteration only: the smallest step since the last damping
    relative_error: Scalar  # scaled distance to the fixed point (< 1: converged)
    anchor: Scalar  # Anderson only: the step size at the last halving
    since: Int[Array, ""]  # Anderson only: iterations since the last halving


class FixedPointLoop(optx.AbstractFixedPointSolver):
    """Anderson mixing for a fixed point `u = g(u)`, in Optimistix's protocol
    (`memory = 1`: plain fixed-point iteration).

    Keeps the differences of the last `memory` iterates' values `g_i = g(u_i)`
    and residuals `r_i = g_i − u_i` (flattened into vectors), with their Gram
    matrix, and steps to `g_k − ΔG γ` with
    `γ = argmin ‖r_k − ΔR γ‖₂` over the differences of consecutive residuals
    `ΔR` and values `ΔG` (the unconstrained form of `Σ α_i g_i`, `Σ α_i = 1`),
    solved by the normal equations (Cholesky) of the column-scaled `ΔR` with a
    Tikhonov shift `λ I` (`λ` at least `10 ε` of the dtype). For complex states this is
    the complex least-squares problem (the coefficients are then complex).
    Returns the last `g(u)`.

    Stopping: the step `s_k = g(u_k) − u_k` of a linearly converging iteration
    shrinks like `q^k`, and the distance from `g(u_k)` to the fixed point is
    `≈ ‖s_k‖ q/(1 − q)`, which exceeds the step by far when `q` is near 1 (as
    for the synchronous update of a Hopfield network on real images, whose
    Jacobian has eigenvalues close to ±1). The rate `q` is measured from the
    last few steps,
    `q = (‖s_k‖/‖s_{k−w}‖)^{1/w}`, and the iteration stops when the estimated
    distance `‖s_k‖ / (1 − q)`, scaled by `atol + rtol |g(u)|`, is below 1, after
    at least two steps. Anderson's steps shrink faster than the map contracts,
    so with `memory > 1` the distance is also at least `‖s_k‖ κ`, where `κ`, the
    largest `‖ΔU_i‖/‖ΔR_i‖` seen (`ΔU` the differences of iterates), estimates
    `‖(I − J)⁻¹‖` for the map's Jacobian `J`. A step already at the level of
    round-off (`‖s_k‖ ≤ 64 ε ‖g(u)‖`) stops the iteration too (the rate is then
    meaningless) if it is within tolerance.
    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar] = optx.rms_norm
    memory: int = 5
    regularisation: float = 1e-8

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del fn, args, options, f_struct, aux_struct, tags
        flat, _ = jfu.ravel_pytree(y)
        history = jnp.zeros(
            (self.memory - 1,) + _real_rows(flat).shape, real_dtype(flat.dtype)
        )
        return FixedPointLoopState(
            value=jnp.zeros_like(flat),
            residual=jnp.zeros_like(flat),
            value_differences=history,
            residual_differences=history,
            gram=jnp.zeros((self.memory - 1, self.memory - 1), flat.dtype),
            amplification=jnp.array(1.0, real_dtype(flat.dtype)),
            count=jnp.array(0),
            steps=jnp.full((_RATE_WINDOW,), jnp.inf, real_dtype(flat.dtype)),
            damping=jnp.array(1.0, real_dtype(flat.dtype)),
            smallest=jnp.array(jnp.inf, real_dtype(flat.dtype)),
            relative_error=jnp.array(jnp.inf, real_dtype(flat.dtype)),
            anchor=jnp.array(jnp.inf, real_dtype(flat.dtype)),
            since=jnp.array(0),
        )

    def step(self, fn, y, args, options, state, tags):
        del options, tags
        flat_y, unravel = jfu.ravel_pytree(y)
        g, aux = fn(y, args)
        flat_g, _ = jfu.ravel_pytree(g)
        r = flat_g - flat_y
        with jax.numpy_dtype_promotion("standard"):
            scale = self.atol + self.rtol * jnp.abs(flat_g)
        step_size = self.norm(-r / scale).astype(state.relative_error.dtype)
        steps = jnp.concatenate([step_size[None], state.steps[:-1]])
        # The observed rate over the window (fewer steps early on); unknown until
        # two steps have been seen.
        seen = jnp.minimum(state.count, _RATE_WINDOW - 1)
        oldest = steps[jnp.maximum(seen, 1)]
        rate = (step_size / oldest) ** (1 / jnp.maximum(seen, 1))
        rate = jnp.nan_to_num(jnp.where(seen >= 1, rate, 1.0), nan=1.0)
        growing = rate >= 1
        rate = jnp.clip(rate, 0.0, _MAX_RATE)
        distance = step_size / (1 - rate)
        if self.memory > 1:
            # Anderson's steps shrink faster than the map contracts, so their
            # rate says little about the distance: that is `‖(I − J)⁻¹ r‖` for the
            # map's Jacobian `J`, which amplifies the step by up to `1/(1 − λ)`
            # along a slowly contracting direction (`λ` near 1). The history
            # measures it: `ΔR = (J − I) ΔU` for the differences of iterates
            # `ΔU = ΔG − ΔR`, and the largest `‖ΔU_i‖/‖ΔR_i‖` seen is the
            # amplification found so far.
            history = self._remember(flat_g, r, state)
            distance = jnp.maximum(distance, step_size * history[3])
        roundoff = self.norm(r) <= _ROUNDOFF * eps(flat_g.dtype) * self.norm(flat_g)
        error = jnp.where(
            (state.count >= 1) & (distance < 1), distance, jnp.maximum(distance, 1.0)
        )
        error = jnp.where(roundoff & (step_size < 1), step_size, error)

        damping = state.damping
        if self.memory == 1:
            # A map that stops contracting (a cycle: an eigenvalue of its Jacobian
            # at or beyond −1, as the synchronous update of a layered network or
            # gradient descent with too long a step can have) is damped by
            # halving its steps, down to 1/64; the rate is then measured afresh.
            # A slowly converging iteration can look flat over a window; a cycle
            # also has steps larger than the smallest one seen.
            stuck = (seen == _RATE_WINDOW - 1) & growing & ~roundoff
            stuck = stuck & (step_size > 1.05 * state.smallest)
            damping = jnp.where(stuck, jnp.maximum(damping / 2, 1 / 64), damping)
            steps = jnp.where(stuck, jnp.inf, steps)
            smallest = jnp.where(stuck, jnp.inf, jnp.minimum(state.smallest, step_size))
            mixed, ok = flat_y + damping * r, jnp.array(True)
            count = jnp.where(stuck, 0, state.count + 1)
            history = (
                state.value_differences,
                state.residual_differences,
                state.gram,
                state.amplification,
            )
        else:
            mixed, ok = self._mix(flat_g, *history[::2], state.count)
            count, smallest = state.count + 1, state.smallest
        progress = step_size < state.anchor / 2
        anchor = jnp.where(progress, step_size, state.anchor)
        since = jnp.where(progress, 0, state.since + 1)
        converged = error < 1
        # A degenerate history (non-finite coefficients) falls back to a plain step.
        new_flat = jnp.where(converged | ~ok, flat_g, mixed)
        new_state = FixedPointLoopState(
            value=flat_g,
            residual=r,
            value_differences=history[0],
            residual_differences=history[1],
            gram=history[2],
            amplification=history[3],
            count=count,
            steps=steps,
            damping=damping,
            smallest=smallest,
            relative_error=error,
            anchor=anchor,
            since=since,
        )
        return unravel(new_flat), new_state, aux

    def _remember(self, g, r, state):
        """The histories of differences `ΔG`, `ΔR` and the Gram matrix `ΔRᴴ ΔR`
        with the newest differences `g − g_prev`, `r − r_prev` in front (zero
        before the second iterate). The history shifts rather than scattering at
        a slot index (a batched index under `vmap`), and only the Gram matrix's
        new row is computed: `m − 1` inner products per step instead of `(m − 1)²`.
        """
        first = state.count == 0
        d_g = jnp.where(first, 0, g - state.value)
        d_r = jnp.where(first, 0, r - state.residual)
        d_gs = jnp.concatenate([_real_rows(d_g)[None], state.value_differences[:-1]])
        d_rs = jnp.concatenate([_real_rows(d_r)[None], state.residual_differences[:-1]])
        # ⟨ΔR_i, ΔR_0⟩ (the new column of ΔRᴴ ΔR) and ⟨ΔR_i, r⟩ (the
        # least-squares problem's right-hand side) in one pass over the history.
        row, rhs = _inner(d_rs, d_r, r)
        inner = jnp.concatenate([row[1:, None], state.gram[:-1, :-1]], axis=1)
        gram = jnp.concatenate([row.conj()[None], inner])
        moved = jnp.sqrt(jnp.sum(jnp.abs(d_g - d_r) ** 2))
        newest = jnp.where(row[0] != 0, moved / jnp.sqrt(jnp.abs(row[0])), 1.0)
        amplification = jnp.clip(
            jnp.maximum(state.amplification, newest), 1.0, 1 / (1 - _MAX_RATE)
        )
        return d_gs, d_rs, gram, amplification, rhs

    def _mix(self, g, d_g, gram, rhs, count):
        """The Anderson step `g − ΔG γ`, `γ = argmin ‖r − ΔR γ‖₂`, from the Gram
        matrix `ΔRᴴ ΔR` and `ΔRᴴ r`."""
        # A difference involving a slot not filled yet is masked out (its
        # coefficient is then zero).
        used = jnp.arange(self.memory - 1) < count
        pair = used[:, None] & used[None, :]
        # Unit columns resolve old, large differences and new, small ones alike;
        # the Tikhonov term keeps the problem positive definite. The
        # (memory − 1)-square normal equations by Cholesky, not a QR
        # factorisation of the n × (memory − 1) matrix: batched QR is the most
        # expensive part of a step on CPU (ten times the field of a 522-unit
        # network for complex states), while the Gram matrix takes one new row of
        # inner products per step; Cholesky also compiles in a fraction of the
        # time of a general solve. Squaring the conditioning is harmless here:
        # directions the regularisation suppresses are the ones it would lose.
        norms = jnp.sqrt(jnp.abs(jnp.diagonal(gram)))
        norms = jnp.where(used & (norms > 0), norms, 1)
        scaled = jnp.where(pair, gram / (norms[:, None] * norms[None, :]), 0)
        shift = _gram_shift(self.regularisation, g.dtype) * jnp.eye(self.memory - 1)
        factor = jnp.linalg.cholesky(scaled + shift.astype(gram.dtype))
        rhs = jnp.where(used, rhs / norms, 0)
        gamma = jax.scipy.linalg.cho_solve((factor, True), rhs)
        gamma = jnp.where(used, gamma / norms, 0)
        return g - _combine(gamma, d_g, g), jnp.all(jnp.isfinite(gamma))

    def terminate(self, fn, y, args, options, state, tags):
        del fn, y, args, options, tags
        converged = state.relative_error < 1
        if self.memory == 1:
            return converged, optx.RESULTS.successful
        stalled = ~converged & (state.since >= _PATIENCE)
        return converged | stalled, optx.RESULTS.where(
            stalled, optx.RESULTS.nonlinear_divergence, optx.RESULTS.successful
        )

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, state, tags, result
        return y, aux, {}


class AndersonAcceleration(AbstractIteratedMap):
    """Fixed-point iteration of `u ← u + η f(u)`, accelerated by Anderson mixing.

    Plain fixed-point iteration (`holoode.FixedPointIteration`) converges like
    `ρⁿ`, `ρ` the spectral radius of the map's Jacobian. Anderson acceleration
    (type II, as in Walker & Ni, 2011) remembers the last `m = memory` iterates
    `u_i`, their images `g_i = u_i + η f(u_i)` and residuals `r_i = g_i − u_i`, and
    steps to

        u_{k+1} = Σ_i α_i g_i,   α = argmin ‖Σ_i α_i r_i‖₂  subject to  Σ_i α_i = 1,

    solved in the unconstrained form `u_{k+1} = g_k − ΔG γ`,
    `γ = argmin ‖r_k − ΔR γ‖₂` over differences of consecutive values and
    residuals, by the normal equations of the column-scaled `ΔR` with a Tikhonov
    shift `λ I`. Near the equilibrium this is a GMRES-like Krylov method
    on the linearised map. Each iteration costs one evaluation of `f` plus
    `O(m² n)` work on the flattened state (`n` entries). Real and complex states
    are handled alike: for complex states the least-squares problem uses
    conjugate transposes and the coefficients are complex, which is the natural
    choice for a field that is holomorphic in `u`.

    It stops when the estimated *distance* to the fixed point is within tolerance:
    `rms(s) / (1 − q) < 1` for the scaled step `s = (g(u) − u) / (atol + rtol |g(u)|)`
    and the convergence rate `q` measured over the last few steps (the criterion of
    `holoode.FixedPointIteration`), or `rms(s) κ < 1` with `κ` the largest ratio
    `‖Δu‖/‖Δr‖` of the differences of iterates and of residuals in its history
    (an estimate of `‖(I − J)⁻¹‖` for the map's Jacobian `J`, which the
    accelerated steps' own rate does not see), and returns `g(u)`. So
    `rtol`/`atol` bound the error of the equilibrium itself (within a factor of
    2 in the tests), and gradient errors follow the tolerance. Caveat: in float32
    a tolerance below the attainable accuracy, about `64 ε κ` (`ε` ≈ 1.2e-7),
    stops at round-off, and the distance is then that accuracy, not the
    tolerance; for a slowly relaxing network (`κ` of tens) the float32 default
    1e-6 is such a case.
    An iteration whose step has not halved in 150 iterations has stalled and
    stops early (result `nonlinear_divergence`); for the free phase of every rule
    the dynamics then take over (`holoode.SteadyStateODE` from the initial
    state, refined by this solver), as they do where this solver converged to a
    saddle of the energy.

    When it pays: the fewer iterations must outweigh the extra work per
    iteration; the gain grows as plain iteration contracts more slowly and as the
    field becomes more expensive relative to the `O(m² n)` bookkeeping
    (`benchmarks/core_speed.py` and `benchmarks/solvers.py` measure both).

    Caveats: unlike plain iteration Anderson mixing is not monotone, and it is not
    globally convergent: far from an equilibrium (or where `u ← u + η f(u)` is not
    a contraction) it can wander. Reduce `step_size` or `memory`, or start from a
    better state. In float32 the attainable tolerance is limited by round-off
    (about `2e-8` relative for states of order one), as for plain iteration; below
    it the solve stagnates and stops at `max_steps`. `regularisation` (relative
    to unit-scaled differences) keeps the small least-squares problem
    well-posed; its default suits float32 as well as float64. Gradients through
    the solve (backpropagation through time) go through the mixing coefficients as
    well; with `differentiable=False` Optimistix's implicit adjoint is used.

    **Arguments:**

    - `rtol`, `atol`: tolerances on the distance to the equilibrium (`None`: dtype
      default).
    - `max_steps`: at most this many iterations.
    - `memory`: `m`, the number of past iterates mixed (`m = 1` is plain
      fixed-point iteration).
    - `step_size`: `η` in the map `u + η f(u)` (default 1: for a primitive-form model
      the synchronous update `u ← σ(∂(Φ − βC)/∂u)`).
    - `regularisation`: Tikhonov shift `λ` of the least-squares problem, for
      differences scaled to unit norm.
    - `split_complex`: solve complex states as real pairs `(Re u, Im u)` (the
      coefficients are then real).
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=1000, converter=as_int)
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

    def _loop(self, u0) -> FixedPointLoop:
        rtol, atol = self.tolerances(u0)
        return FixedPointLoop(
            rtol=rtol,
            atol=atol,
            norm=optx.rms_norm,
            memory=self.memory,
            regularisation=self.regularisation,
        )
