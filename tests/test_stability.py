"""Stability maps and the safe |β|: the boundary of analytic continuation is found
where a known singularity sits."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

import holoode as ho
from holoode import beta_grid, plot_stability_map, safe_beta, stability_map

from .helpers import data, LinearPole, mlp, reference, rel_error, TIGHT


def pole_model(a=1.0):
    # u*_β = (w x + β y)/(a + β): one pole, at β = −a; radius of analyticity |a|.
    return LinearPole(jnp.array(a), jnp.array(0.7))


@functools.cache
def pole_map():
    return stability_map(
        pole_model(1.0),
        jnp.array([1.0]),
        jnp.array([0.3]),
        cost=ho.SquaredError(),
        betas=beta_grid(2.0, 17),  # spacing 0.25: the grid holds β = −1, the pole
        solver=TIGHT,
    )


def test_map_marks_the_disc_around_a_pole():
    result = pole_map()
    betas = result.betas
    assert betas.shape == result.continued.shape == result.reached.shape
    np.testing.assert_allclose(result.radius, 1.0, rtol=1e-6)
    modulus = jnp.abs(betas)
    at_pole = jnp.abs(betas + 1) < 1e-12
    assert int(jnp.sum(at_pole)) == 1
    # A linear network is solvable everywhere except at the pole ...
    assert not bool(result.reached[at_pole][0])
    assert bool(jnp.all(result.reached | at_pole))
    # ... but beyond |β| = a the equilibrium is not the analytic continuation of
    # the free one: a circle there encloses the pole.
    assert not bool(jnp.any(result.continued[modulus > 1.01]))
    assert bool(jnp.all(result.continued[modulus < 0.99]))
    # Where the continuation prediction is accurate enough to judge, it agrees
    # to within its own truncation error, (max(|β|, ρ)/a)^16 ≲ 1e-4 here.
    judged = jnp.isfinite(result.mismatch)
    assert bool(jnp.any(judged))
    assert float(jnp.max(result.mismatch[judged])) < 1e-3
    # The reference circles: ratio = ρ/a inside (where resolved above the
    # solver's noise), failing outside.
    inside = (result.radii < 0.99) & result.circle_resolved
    assert int(jnp.sum(inside)) >= 3
    np.testing.assert_allclose(result.radius_ratio[inside], result.radii[inside], 1e-6)
    assert not bool(jnp.any(result.circle_ok[result.radii > 1.01]))


def test_safe_beta_finds_the_pole():
    x = jnp.array([[1.0], [0.5]])
    y = jnp.array([[0.3], [-0.2]])
    for a in [1.0, 0.25]:
        r = safe_beta(pole_model(a), x, y, cost=ho.SquaredError(), solver=TIGHT)
        np.testing.assert_allclose(r, a, rtol=1e-6)
    # Starting far outside the disc: the probe shrinks until it fits.
    r = safe_beta(
        pole_model(0.25), x, y, cost=ho.SquaredError(), solver=TIGHT, beta0=5.0
    )
    np.testing.assert_allclose(r, 0.25, rtol=1e-6)
    # A float32 model (with 64-bit JAX on, as here) finds the same pole.
    model32 = LinearPole(jnp.float32(0.25), jnp.float32(0.7))
    solver32 = ho.FixedPointIteration(rtol=1e-6, atol=1e-6)
    r = safe_beta(
        model32, x.astype(jnp.float32), y.astype(jnp.float32), cost=ho.SquaredError(),
        solver=solver32,
    )  # fmt: skip
    np.testing.assert_allclose(r, 0.25, rtol=1e-3)


@pytest.mark.slow
def test_safe_beta_bounds_where_holomorphic_ep_works():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    radius = float(safe_beta(model, x, y, cost=cost, solver=TIGHT))
    assert 0.2 < radius < 1.0
    exact = reference(model, x, y, cost)

    def hep_error(beta):
        grads, _ = ho.gradient(
            ho.HolomorphicEP(beta, 16),
            model,
            x,
            y,
            cost=cost,
            solver=TIGHT,
            throw=False,
        )
        return rel_error(grads, exact)

    # Inside, the aliasing error falls like (|β|/R)^16 (2e-5 at half the radius);
    # just beyond, the continuation is lost and the estimate is percent-level off.
    assert hep_error(0.5 * radius) < 1e-5
    assert hep_error(1.2 * radius) > 1e-2


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "map.png"
    plot_stability_map(pole_map(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_num_points_is_refused():
    with pytest.raises(ValueError, match="num_points"):
        safe_beta(
            pole_model(),
            jnp.ones((1, 1)),
            jnp.ones((1, 1)),
            cost=ho.SquaredError(),
            num_points=3,
        )
