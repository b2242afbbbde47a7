"""Holomorphic equilibrium propagation: the N-point Fourier estimator."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .._circle import (
    circle_points,
    decay_ratio,
    flatten_states,
    full_circle,
    harmonic_norms,
    harmonic_weights,
    noise_floor,
)
from .._equilibrium import AbstractEquilibriumSolver, AndersonAcceleration
from .._equilibrium.batched import initial_states, solve_free, solve_points
from .._misc import (
    as_int,
    complex_dtype,
    eps,
    real_dtype,
    stop_gradient,
    tree_astype,
    tree_dtype,
    tree_norm,
)
from .._model import parameters
from .._noise import NeuronNoise
from .._solution import Info
from .base import (
    AbstractLearningRule,
    add_noise,
    as_radius,
    concrete_values,
    free_loss,
    weighted_signal,
)


class HolomorphicEP(AbstractLearningRule):
    """Holomorphic equilibrium propagation (Laborieux & Zenke, NeurIPS 2022).

    If the energy and cost are holomorphic, the nudged equilibrium `u*_β` and the
    learning signal `G(β) = ∂F/∂θ(u*_β, β)` continue analytically to complex `β`,
    and the loss gradient is exactly the first Taylor coefficient of `G`:

        dL/dθ = (1 / 2π|β|) ∮ G(|β| e^{iφ}) e^{−iφ} dφ.

    This is exact for *finite* `|β|` as long as the circle lies inside the disc
    where `u*_β` is analytic. With `N` equally spaced points `φ_k = 2πk/N` the
    trapezoidal rule aliases harmonics `N+1, 2N+1, ...` onto the first, so the error
    shrinks like `(|β|/R)^N` (`R`: the radius of analyticity).

    For real parameters `G(β̄) = conj G(β)`, so only the `⌊N/2⌋ + 1` points in the
    upper half-plane are solved, all in one batch solve (or, with
    `warm_start="neighbour"`, one after another around the circle). `N = 2` is the
    symmetric classic EP estimate, solved in real arithmetic.

    Diagnostics (`holoode.Info`, need `N ≥ 3`): `error_estimate` is the larger of
    the aliasing bound `‖c_{N−1}‖/‖c_1‖ / (1 − r^N)` (the highest gradient
    harmonic the same samples resolve, relative to the first, times the sum of
    the aliased harmonics `1 + jN` for the largest `radius_ratio` `r`; it
    over-estimates the aliasing error `≈ (‖c_{N−1}‖/‖c_1‖)^{N/(N−2)}` far inside
    the disc, and does not under-estimate it near the edge, where the harmonics
    stop decaying geometrically) and the equilibria's tolerance relative to the
    states' response to β (the solve error); `radius_ratio` estimates `|β|/R` per
    example from the decay of the state's harmonics. If any example has
    `radius_ratio ≥ max_radius_ratio` the result is `RESULTS.continuation_lost`
    (the equilibria around the circle are not one analytic function) whatever
    else failed, and `holoode.gradient` raises by default. Caveat: far beyond the
    radius the points can land on another branch whose harmonics look smooth;
    `holoode.safe_beta` is the reliable check before choosing a large `|β|`.

    **Arguments:**

    - `beta`: the radius `|β| > 0` of the circle (default 0.1), or one radius per
      example of the batch (shape `(batch,)`). The gradient of the batch mean is
      the mean of per-example gradients, each the first Fourier coefficient of
      its own learning signal, so each example's term is exact for its own
      circle as long as that circle lies inside its own disc of analyticity:
      an example whose disc is small can use a smaller circle without costing
      the others their signal strength (training's `beta_backoff` does this for
      the examples whose continuation is lost). `radius_ratio` is then each
      example's `|β_b|/R_b`.
    - `num_points`: `N ≥ 2` (default 8). The defaults (with the default solver)
      are within 1e-2 of the exact gradient on the paper's MNIST network, at
      initialisation and after training (`benchmarks/core_speed.py`), where
      N = 4 is not at initialisation: slowly relaxing images have a radius of
      analyticity close to 0.1.
    - `warm_start`: `"free"` (every point starts from the free equilibrium, all
      points batched) or `"neighbour"` (each point starts from the previous one on
      the circle).
    - `max_radius_ratio`: threshold on `radius_ratio` for `continuation_lost`.
    - `noise`: a `holoode.NeuronNoise`; the learning signal at each point is then
      averaged over noisy snapshots (pass `key` to `holoode.gradient`). The
      diagnostics use the noise-free equilibria.
    """

    beta: jax.Array = eqx.field(default=0.1, converter=as_radius)
    num_points: int = eqx.field(default=8, converter=as_int)
    warm_start: Literal["free", "neighbour"] = "free"
    max_radius_ratio: float = 0.9
    noise: NeuronNoise | None = None

    def __check_init__(self):
        beta = concrete_values(self.beta)
        if beta is not None and not np.all((beta > 0) & np.isfinite(beta)):
            raise ValueError(
                "HolomorphicEP(beta=...) is the radius |β| of the circle and must be a "
                "finite positive number (one for all examples, or one per example), "
                f"got {beta.tolist()!r}; e.g. `HolomorphicEP(beta=0.1)`."
            )
        if not isinstance(self.num_points, int) or self.num_points < 2:
            raise ValueError(
                "HolomorphicEP(num_points=...) must be an integer ≥ 2, got "
                f"{self.num_points!r}."
            )
        if self.warm_start not in ("free", "neighbour"):
            raise ValueError(
                "HolomorphicEP(warm_start=...) must be 'free' or 'neighbour', got "
                f"{self.warm_start!r}."
            )
        ratio = self.max_radius_ratio
        if not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
            raise ValueError(
                "HolomorphicEP(max_radius_ratio=...) is the largest accepted estimate "
                f"of |β|/R and must lie in (0, 1], got {ratio!r}; the default is 0.9."
            )

    def default_solver(self) -> AbstractEquilibriumSolver:
        """`holoode.AndersonAcceleration(memory=10)`: on real data (the MNIST
        yardstick of `benchmarks/core_speed.py`) it gives a gradient as accurate
        as the dynamics (`holoode.SteadyStateODE`) at the same tolerance, in far
        fewer field evaluations; the free phase falls back on the dynamics where
        it stalls or lands on a saddle (`holoode.solve_free`)."""
        return AndersonAcceleration(memory=10)

    def estimate(self, model, x, y, *, cost, solver, key):
        model = stop_gradient(model)
        params, _ = parameters(model)
        rdtype = real_dtype(tree_dtype(params))
        n = self.num_points
        batch = x.shape[0]
        if self.beta.ndim == 1 and self.beta.shape != (batch,):
            raise ValueError(
                f"HolomorphicEP(beta=...) has {self.beta.shape[0]} radii, one per "
                f"example, but the batch has {batch} examples: pass one |β| for all "
                "or exactly one per example."
            )
        # The gradient keeps the parameters' dtype.
        beta = jnp.broadcast_to(self.beta.astype(rdtype), (batch,))
        free = solve_free(solver, model, x, y, cost, initial_states(model, x, rdtype))
        points_real = n == 2
        dtype = rdtype if points_real else complex_dtype(rdtype)
        betas = circle_points(beta[:, None], n)  # (batch, points)
        betas = jnp.real(betas).astype(dtype) if points_real else betas.astype(dtype)
        u_start = tree_astype(free.value, dtype)
        nudged = solve_points(
            solver,
            model,
            x,
            y,
            cost,
            betas,
            u_start,
            chain=self.warm_start == "neighbour",
        )
        harmonics = [1] if n == 2 else [1, n - 1]
        weights = harmonic_weights(n, harmonics, complex_dtype(rdtype))
        if points_real:
            weights = jnp.real(weights).astype(rdtype)
        # Each example's terms divided by its own radius: `(rows, batch, points)`.
        weights = weights[:, None, :] / beta[None, :, None].astype(weights.dtype)
        states, all_betas, weights_all, finite = add_noise(
            self.noise, model, x, y, cost, betas, nudged.value, weights, key
        )
        signal = weighted_signal(model, states, x, y, cost, all_betas, weights_all)
        grads = jtu.tree_map(lambda s: s[0], signal)
        loss = free_loss(model, free.value, x, y, cost)
        if n < 3:
            return grads, Info.from_equilibria(
                loss, [free, nudged], grads, finite=finite
            )
        c1 = tree_norm(jtu.tree_map(lambda s: s[0], signal))
        c_last = tree_norm(jtu.tree_map(lambda s: s[1], signal))
        # The first harmonic the samples alias onto the gradient is at least as
        # large as harmonic N−1 scaled by the decay: `(c_{N−1}/c_1)^{N/(N−2)}` if
        # the decay is geometric. Near the radius it is not, so the
        # unextrapolated ratio `c_{N−1}/c_1` is reported: an over-estimate by
        # `(R/|β|)²` far inside the disc, never an under-estimate near its edge.
        aliasing = c_last / c1
        circle = full_circle(flatten_states(nudged.value, 2), n)
        d1, d_last = harmonic_norms(circle, n, [1, n - 1])
        # Harmonics below the equilibria's own accuracy are noise, not signal.
        floor = noise_floor(solver, flatten_states(free.value, 1))
        radius_ratio, _ = decay_ratio(d1, d_last, floor, n - 2)
        # Equilibria within their tolerance (`floor / 10`) of the truth move the
        # gradient by about that much relative to the states' response to β
        # (their first harmonic).
        solve_error = jnp.sum(floor) / 10 / jnp.maximum(jnp.sum(d1), eps(rdtype))
        # Every harmonic `1 + jN` aliases onto the first: the series `Σ_j r^{jN}`
        # sums to `1/(1 − r^N)` for the worst example's `r`.
        r = jnp.nan_to_num(jnp.max(radius_ratio), nan=0.0, posinf=1.0)
        series = 1 / (1 - jnp.minimum(r, 0.99) ** n)
        return grads, Info.from_equilibria(
            loss,
            [free, nudged],
            grads,
            error_estimate=jnp.maximum(aliasing * series, solve_error),
            radius_ratio=radius_ratio,
            max_radius_ratio=self.max_radius_ratio,
            finite=finite,
        )
