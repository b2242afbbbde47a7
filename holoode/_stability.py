"""Where does the nudged equilibrium continue analytically? Stability maps in the
complex β-plane and an estimate of the largest safe `|β|`."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Complex, Float

from ._circle import (
    circle_points,
    decay_ratio,
    flatten_states,
    full_circle,
    harmonic_norms,
    noise_floor,
)
from ._costs import AbstractCost
from ._equilibrium import AbstractEquilibriumSolver, SteadyStateODE
from ._equilibrium.batched import initial_states, solve_batch, solve_points
from ._misc import (
    complex_dtype,
    default_tolerance,
    eps,
    real_dtype,
    tree_astype,
    tree_dtype,
)
from ._model import AbstractEquilibriumModel, parameters
from ._solution import RESULTS


class StabilityMap(eqx.Module):
    """The result of `holoode.stability_map`: one example, a grid of complex β.

    **Fields** (grid-shaped unless stated):

    - `betas`: the grid of complex β.
    - `reached`: the solve from the free equilibrium met its tolerance.
    - `residual`: RMS of the vector field at the state found.
    - `distance`: RMS distance of that state from the free equilibrium.
    - `mismatch`: distance of the state found from the analytic-continuation
      prediction, relative to the state's size on the reference circle used
      (`nan` where no prediction is accurate enough to judge).
    - `continued`: the state found is the analytic continuation of the free
      equilibrium: `reached`, `|β| < radius`, and (where judged) `mismatch` below
      the prediction's accuracy. Holomorphic EP on the circle of radius `|β|` is
      trustworthy only if `continued` holds all around it.
    - `radii`, `radius_ratio`, `circle_ok`, `circle_resolved` (shape
      `(num_radii,)`): the reference circles; the decay ratio `q ≈ ρ/R` of the
      state's harmonics on each (0 where the state does not respond to β above the
      solver's noise, `inf` where only the aliased negative harmonic does); whether
      every solve on it was reached with `q < 1`; and whether its harmonics stood
      above the noise, so that `ρ/q` estimates `R` (otherwise it only bounds `R`
      from below).
    - `radius`: the estimated radius `R` of the disc around β = 0 in which the
      equilibrium is analytic (`inf` if no circle fails and none resolves a
      decay).
    """

    betas: Complex[Array, "..."]
    reached: Bool[Array, "..."]
    residual: Float[Array, "..."]
    distance: Float[Array, "..."]
    mismatch: Float[Array, "..."]
    continued: Bool[Array, "..."]
    radii: Float[Array, " radii"]
    radius_ratio: Float[Array, " radii"]
    circle_ok: Bool[Array, " radii"]
    circle_resolved: Bool[Array, " radii"]
    radius: Float[Array, ""]


def beta_grid(extent: float, num: int = 41) -> Complex[Array, "num num"]:
    """A square grid of complex β, `[−extent, extent]²`, `num × num` points (real
    part along the last axis, imaginary part along the first)."""
    axis = jnp.linspace(-extent, extent, num)
    re, im = jnp.meshgrid(axis, axis)
    return re + 1j * im


def _radius_ratio(circle: Array, floor: Array, num_points: int):
    """`|β|/R` per example from the Fourier harmonics of the states on a circle
    `(batch, N, size)`: `q = (‖d_{N−1}‖/‖d_{N/2}‖)^{1/(N/2 − 1)}`.

    Inside the disc of analyticity `d_m ≈ c_m |β|^m`, so `q` is the root-test
    estimate of `|β|/R` over the upper half of the harmonics (less biased by the
    power-law factors of branch points, `c_m ~ m^{−α} R^{−m}`, than the pair `1`,
    `N − 1` that `holoode.HolomorphicEP`'s `radius_ratio` uses). A circle around a
    pole carries negative harmonics, and `d_{N−1}` aliases `d_{−1}`: then `q ≥ 1`
    (`inf` if `d_{N/2}` is below the noise floor but `d_{N−1}` is not).

    Returns `(q, resolved)`: `resolved` is `False` where `d_{N−1}` or `d_{N/2}` is
    within 10× of the noise `floor`; `q` is then an upper bound (`ρ/q` a lower
    bound on `R`), or 0 if the state does not respond to β above the noise.
    """
    n = num_points
    dh, dl = harmonic_norms(circle, n, [n // 2, n - 1])
    return decay_ratio(dh, dl, floor, n - 1 - n // 2)


def _solve_circles(solver, model, x, y, cost, u_free, radii, num_points):
    """Equilibria on circles `|β| = ρ_j` (all examples, all points of all radii in
    one batch solve), started from the free equilibrium. Returns the states
    `(radii, batch, N, size)` and whether every solve of each circle was reached
    `(radii, batch)`."""
    dtype = complex_dtype(tree_dtype(u_free))
    u_start = tree_astype(u_free, dtype)
    half = num_points // 2 + 1
    betas = circle_points(radii[:, None], num_points).reshape(-1).astype(dtype)
    sol = solve_points(solver, model, x, y, cost, betas, u_start, chain=False)
    states = flatten_states(sol.value, 2)  # (batch, radii·half, size)
    states = states.reshape(states.shape[0], len(radii), half, -1).swapaxes(0, 1)
    reached = (sol.result == RESULTS.successful).reshape(-1, len(radii), half)
    circles = jax.vmap(lambda h: full_circle(h, num_points))(states)
    return circles, jnp.all(reached, axis=2).T


def _check_num_points(num_points):
    if not isinstance(num_points, int) or num_points < 4:
        raise ValueError(
            "num_points must be a Python integer ≥ 4 (the decay is measured "
            f"between harmonics N/2 and N − 1), got {num_points!r}."
        )


def _interpolation_weights(betas, rho, num_points):
    """Barycentric weights `w_sk` of the polynomial of degree `N − 1` through the
    `N` points of the circle of radius `rho`, evaluated at each β (inside or
    outside the circle): `p(β) = Σ_k w_sk u_k`."""
    n = num_points
    omega = jnp.exp(2j * jnp.pi * jnp.arange(n) / n)
    t = betas[:, None] / rho
    diff = t - omega[None, :]
    hit = jnp.abs(diff) < 1e3 * eps(diff.dtype)
    safe = jnp.where(hit, 1.0, diff)
    w = (t**n - 1) / n * omega[None, :] / safe
    return jnp.where(jnp.any(hit, axis=1, keepdims=True), hit.astype(w.dtype), w)


@eqx.filter_jit
def _stability_map(model, x, y, cost, solver, betas, radii, num_points, rtol):
    shape = betas.shape
    x, y = x[None], jnp.asarray(y)[None]
    params, _ = parameters(model)
    rdtype = real_dtype(tree_dtype(params))
    cdtype = complex_dtype(rdtype)
    free = solve_batch(solver, model, x, y, cost, 0.0, initial_states(model, x, rdtype))
    u_free = flatten_states(free.value, 1)  # (1, size)
    free_ok = (free.result == RESULTS.successful)[0]
    floor = noise_floor(solver, u_free)

    # The grid and the reference circles (the upper half of each, by conjugate
    # symmetry), every point from the free equilibrium, all in one solve.
    flat = betas.reshape(-1).astype(cdtype)
    num = flat.shape[0]
    half = num_points // 2 + 1
    on_circles = circle_points(radii[:, None], num_points).reshape(-1).astype(cdtype)
    u_start = tree_astype(free.value, cdtype)
    sols = solve_points(
        solver,
        model,
        x,
        y,
        cost,
        jnp.concatenate([flat, on_circles]),
        u_start,
        chain=False,
    )
    states = flatten_states(sols.value, 2)[0]  # (S + M·half, size)
    ok = (sols.result == RESULTS.successful)[0] & free_ok
    u_grid, reached, residual = states[:num], ok[:num], sols.residual[0, :num]
    size = u_grid.shape[-1]
    distance = jnp.linalg.norm(u_grid - u_free, axis=-1) / math.sqrt(size)
    circles = full_circle(states[num:].reshape(len(radii), half, size), num_points)
    circle_reached = jnp.all(ok[num:].reshape(len(radii), half), axis=1)
    ratio, resolved = jax.vmap(lambda c: _radius_ratio(c[None], floor, num_points))(
        circles
    )
    ratio, resolved = ratio[:, 0], resolved[:, 0]
    # A circle fails if a solve fails or its harmonics grow: R ≤ ρ. Any other
    # circle with resolved harmonics estimates R — or, if it lies beyond R and
    # merely crosses a branch cut (harmonics ~ 1/m, q just below 1), overestimates
    # it, giving a valid but loose bound ρ/q > ρ > R. So R is the minimum of both.
    circle_ok = circle_reached & (ratio < 1) & free_ok
    bounds = jnp.where(
        circle_ok,
        jnp.where(resolved, radii / jnp.where(resolved, ratio, 1.0), jnp.inf),
        radii,
    )
    radius = jnp.min(bounds)

    # Branch check: the state found against the interpolant through the circle
    # inside the disc that predicts it best. Its error is about
    # (max(|β|, ρ)/R)^N from the truncated Taylor series, plus the noise floor
    # amplified by extrapolation outside the circle, (|β|/ρ)^{N−1}.
    abs_b = jnp.abs(flat)
    scale = jnp.max(jnp.linalg.norm(circles, axis=-1), axis=-1)  # (M,)
    floor_rel = floor[0] / scale
    big = jnp.maximum(abs_b[:, None], radii[None, :])
    finite_radius = jnp.where(jnp.isfinite(radius), radius, 1.0)
    taylor = jnp.where(jnp.isfinite(radius), (big / finite_radius) ** num_points, 0.0)
    extrap = floor_rel[None, :] * jnp.maximum(abs_b[:, None] / radii[None, :], 1.0) ** (
        num_points - 1
    )
    usable = circle_ok & (radii < radius)
    error = jnp.where(usable[None, :], taylor + extrap, jnp.inf)  # (S, M)
    best = jnp.argmin(error, axis=1)
    best_error = jnp.min(error, axis=1)

    def predict(j, prediction):  # a compiled loop over the circles
        w = _interpolation_weights(flat, radii[j], num_points)
        candidate = jnp.einsum("sk,kd->sd", w, circles[j])
        return jnp.where((best == j)[:, None], candidate, prediction)

    prediction = jax.lax.fori_loop(0, len(radii), predict, jnp.zeros_like(u_grid))
    judged = best_error <= 1e-2
    mismatch = jnp.linalg.norm(u_grid - prediction, axis=-1) / scale[best]
    mismatch = jnp.where(judged, mismatch, jnp.nan)
    agrees = ~judged | (mismatch <= rtol + 10 * best_error)
    continued = reached & (abs_b < radius) & agrees

    def grid_shaped(a):
        return a.reshape(shape)

    return StabilityMap(
        betas=betas,
        reached=grid_shaped(reached),
        residual=grid_shaped(residual),
        distance=grid_shaped(distance),
        mismatch=grid_shaped(mismatch),
        continued=grid_shaped(continued),
        radii=radii,
        radius_ratio=ratio,
        circle_ok=circle_ok,
        circle_resolved=resolved,
        radius=radius,
    )


def stability_map(
    model: AbstractEquilibriumModel,
    x: Array,
    y: ArrayLike,
    *,
    cost: AbstractCost,
    betas: ArrayLike,
    solver: AbstractEquilibriumSolver | None = None,
    radii: ArrayLike | None = None,
    num_radii: int = 16,
    num_points: int = 16,
    rtol: float | None = None,
) -> StabilityMap:
    """Map where the nudged equilibrium of one example is reached and where it
    continues analytically from β = 0 (Laborieux & Zenke 2022, Fig. 2b).

    Holomorphic EP integrates the learning signal over the circle `|β| e^{iφ}`; it is
    exact only if the nudged equilibrium `u*_β` is the *analytic continuation* of
    the free one on the whole disc `|β| ≤ |β|`. Reaching an equilibrium at each
    point is not enough: a solver may land on another branch, and a circle may
    enclose a pole of `u*_β` although every point on it is solvable (as for a
    linear network). This function therefore reports, for each β of the grid:

    1. **reached** — a solve started from the free equilibrium (all grid points in
       one `vmap`, `throw=False`) met its tolerance; with its **residual** and its
       **distance** from the free equilibrium.
    2. **the disc of analyticity** — the states on `num_radii` reference circles
       around 0 (`num_points` points each, halved by conjugate symmetry) are
       expanded in Fourier harmonics `d_m`. Inside the disc of analyticity they
       decay like `(ρ/R)^m`, and `q = (‖d_{N−1}‖/‖d_{N/2}‖)^{1/(N/2−1)}` estimates
       `ρ/R`. A circle around a pole carries negative harmonics, which alias onto
       the high ones and make `q ≥ 1`: such a circle, or one where a solve is not
       reached, bounds `R ≤ ρ`. A circle beyond `R` that merely crosses a branch
       cut sees a jump, whose harmonics decay like `1/m`: `q` is just below 1 and
       `ρ/q > ρ > R`, a loose but valid bound. So `radius` is the minimum of `ρ`
       over failing circles and of `ρ/q` over the others (those whose harmonics
       stand above the solver's noise).
    3. **continued** — the point is reached, `|β| < radius`, and the state found
       agrees with the analytic-continuation prediction: the interpolating
       polynomial of degree `N − 1` through the best-suited circle inside the disc.
       A jump to another branch shows as a mismatch. Where that prediction is too
       inaccurate to judge (its estimated error, about `(max(|β|, ρ)/R)^N`, above
       1%, i.e. towards `radius`), only the first two criteria apply and
       `mismatch` is `nan`.

    Caveats: `ρ/q` is exact for a single pole and an asymptotic (root-test)
    estimate otherwise, biased upward by a factor of about `2^{α/(N/2−1)}` for a
    branch point with `c_m ~ m^{−α}` (≈ 1.16 for `α = 3/2`, `N = 16`); the reference
    circles resolve `R` only to their spacing where they fail; and a singularity
    with a tiny residue (relative to the analytic part) need not make any circle
    fail — but it then also perturbs the holomorphic EP estimate only slightly.
    What is reached depends on the solver: `holoode.SteadyStateODE` follows the
    dynamics, which may be unstable at complex β where the equilibrium still
    exists; `holoode.RootFind` finds any nearby root.
    Cost: `len(betas) + num_radii (N/2 + 1)` solves, plus a free solve.

    **Arguments:**

    - `model`, `x`, `y`, `cost`: one example (no batch axis).
    - `betas`: complex β values, any shape (e.g. `holoode.beta_grid(2.0, 41)`).
    - `solver`: the equilibrium solver (default `holoode.SteadyStateODE()`).
    - `radii`: radii of the reference circles (default `num_radii` radii evenly
      spaced up to the largest `|β|` of the grid).
    - `num_points`: points per reference circle, `N ≥ 4`.
    - `rtol`: allowed relative mismatch for a state to count as continued, on top of
      the prediction's estimated error (default 1e-6 in float64, 1e-3 in float32).

    **Returns:** a `holoode.StabilityMap`; draw it with `holoode.plot_stability_map`.
    """
    _check_num_points(num_points)
    solver = SteadyStateODE() if solver is None else solver
    betas = jnp.asarray(betas)
    x = jnp.asarray(x)
    params, _ = parameters(model)
    rdtype = real_dtype(tree_dtype(params))
    if radii is None:
        top = float(jnp.max(jnp.abs(betas)))
        radii = jnp.linspace(top / num_radii, top, num_radii)
    radii = jnp.sort(jnp.asarray(radii, rdtype).reshape(-1))
    if rtol is None:
        rtol = default_tolerance(rdtype, "continuation")
    return _stability_map(model, x, y, cost, solver, betas, radii, num_points, rtol)


@eqx.filter_jit
def _probe(model, x, y, cost, solver, rho, num_points):
    params, _ = parameters(model)
    rdtype = real_dtype(tree_dtype(params))
    free = solve_batch(solver, model, x, y, cost, 0.0, initial_states(model, x, rdtype))
    floor = noise_floor(solver, flatten_states(free.value, 1))
    circles, ok = _solve_circles(
        solver, model, x, y, cost, free.value, rho[None], num_points
    )
    ratio, resolved = _radius_ratio(circles[0], floor, num_points)
    free_ok = free.result == RESULTS.successful
    return ratio, resolved, ok[0] & free_ok


def safe_beta(
    model: AbstractEquilibriumModel,
    x: Array,
    y: ArrayLike,
    *,
    cost: AbstractCost,
    num_points: int = 16,
    solver: AbstractEquilibriumSolver | None = None,
    beta0: float = 0.1,
    max_iter: int = 12,
) -> Array:
    """Estimate the largest `|β|` whose circle stays inside the disc of
    analyticity of the nudged equilibrium, for every example of a batch.

    Method: the equilibria on a probe circle `|β| = ρ` (`num_points` points,
    from the free equilibrium, all examples in one `vmap`) give, per example, the
    decay ratio of the state's Fourier harmonics
    `q = (‖d_{N−1}‖/‖d_{N/2}‖)^{1/(N/2−1)} ≈ ρ/R` (see `holoode.stability_map`;
    `holoode.HolomorphicEP`'s `info.radius_ratio` is the same idea with harmonics
    1 and `N − 1`), so `R ≈ ρ/q`; the estimate is the minimum over the batch. The
    probe adapts: it shrinks fourfold while the circle fails (a solve not reached,
    or `q ≥ 1`: the circle encloses a singularity, so `R ≤ ρ`), grows fourfold
    while no example responds above the solver's noise (twofold while some
    respond but none is resolved), and otherwise moves to
    half the current estimate, until the largest `q` lies in `[0.4, 0.7]`: low
    enough that the circle is clearly inside the disc (a circle beyond `R` that
    crosses a branch cut can show `q` just below 1), high enough that harmonic
    `N − 1` stands above the noise.

    Caveats: `ρ/q` is exact for a single pole and an asymptotic (root-test)
    estimate otherwise (biased upward by a few percent to ~20% near branch
    points). It says where the equilibrium stops being analytic, not how accurate
    holomorphic EP is below it: the aliasing error at `|β|` is about `(|β|/R)^N`,
    so train with a fraction of the result (e.g. `R · tol^{1/N}`). It depends on
    the solver (a circle the solver cannot solve counts as failed) and on the
    batch: other examples may have smaller radii. Returns `inf` if no example's
    state responds to β above the noise; if every probe fails, the smallest
    failing probe radius, which bounds `R` from above and is not itself safe.

    **Arguments:**

    - `model`, `x`, `y`, `cost`: a batch (leading axis), as for `holoode.gradient`.
    - `num_points`: points on the probe circle, `N ≥ 4` (more points, sharper
      estimate).
    - `solver`: the equilibrium solver (default `holoode.SteadyStateODE()`).
    - `beta0`: the first probe radius.
    - `max_iter`: at most this many probes (each one batched solve).

    **Returns:** a scalar array: the estimated radius `R` (the minimum over the
    batch).
    """
    _check_num_points(num_points)
    solver = SteadyStateODE() if solver is None else solver
    params, _ = parameters(model)
    rdtype = real_dtype(tree_dtype(params))
    x, y = jnp.asarray(x), jnp.asarray(y)
    rho, upper, estimate = float(beta0), math.inf, math.inf
    for _ in range(max_iter):
        ratio, resolved, ok = _probe(
            model, x, y, cost, solver, jnp.asarray(rho, rdtype), num_points
        )
        ratio, resolved = np.asarray(ratio), np.asarray(resolved)
        if not bool(jnp.all(ok)) or bool(np.any(ratio >= 1)):
            upper = min(upper, rho)
            estimate = min(estimate, upper)
            rho /= 4
            continue
        with np.errstate(divide="ignore"):
            radii = rho / ratio
        # Resolved examples estimate their radius; the others only bound it below.
        estimate = min([upper, *radii[resolved]])
        lower = min([math.inf, *radii[~resolved]])
        if not math.isfinite(estimate):
            rho *= 4 if not np.any(ratio > 0) else 2
            continue
        if 0.4 <= rho / estimate <= 0.7 and lower >= estimate:
            break
        target = 0.5 * estimate
        if abs(target - rho) < 0.05 * rho:  # only unresolved examples are left
            break
        rho = target
    return jnp.asarray(estimate, rdtype)


def plot_stability_map(result: StabilityMap, path, *, title: str | None = None):
    """Draw a `holoode.StabilityMap` as a PNG (or any format matplotlib infers
    from `path`).

    Left: each β coloured as continued (the analytic continuation of the free
    equilibrium), reached but not continued (another branch, or outside the disc
    of analyticity), or not reached; the estimated radius of analyticity as a
    dashed circle. Right: `log10` of the distance of the state found from the free
    equilibrium (blank where not reached). Uses matplotlib's Agg canvas directly,
    without touching the global backend.

    **Arguments:**

    - `result`: from `holoode.stability_map`.
    - `path`: the output file.
    - `title`: an optional figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    betas = np.asarray(result.betas)
    category = np.where(
        np.asarray(result.continued), 2, np.where(np.asarray(result.reached), 1, 0)
    )
    distance = np.log10(np.maximum(np.asarray(result.distance), 1e-16))
    distance = np.where(np.asarray(result.reached), distance, np.nan)
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    cmap = ListedColormap(["#d62728", "#ff7f0e", "#2ca02c"])
    # The point β = 0 itself (distance 0) would stretch the colour scale.
    low = np.nanpercentile(distance, 2) if np.any(np.isfinite(distance)) else None
    panels = [
        (category, cmap, dict(vmin=-0.5, vmax=2.5), "analytic continuation"),
        (distance, "viridis", dict(vmin=low), "log10 RMS |u*(β) − u*(0)|"),
    ]
    for ax, (values, cm, lims, label) in zip(axes, panels):
        re, im = betas.real, betas.imag
        if betas.ndim == 2:
            mesh = ax.pcolormesh(re, im, values, cmap=cm, shading="nearest", **lims)
        else:
            mesh = ax.scatter(re.ravel(), im.ravel(), c=values.ravel(), cmap=cm, **lims)
        bar = fig.colorbar(mesh, ax=ax)
        if values is category:
            bar.set_ticks([0, 1, 2])
            bar.set_ticklabels(["not reached", "other branch /\nbeyond R", "continued"])
        radius = float(result.radius)
        if np.isfinite(radius) and radius > 0:
            phi = np.linspace(0, 2 * np.pi, 200)
            ax.plot(radius * np.cos(phi), radius * np.sin(phi), "k--", lw=1)
        ax.plot([0], [0], "k+")
        ax.set_xlabel("Re β")
        ax.set_ylabel("Im β")
        ax.set_aspect("equal")
        ax.set_title(label)
    if title is None:
        title = f"estimated radius of analyticity R ≈ {float(result.radius):.3g}"
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
