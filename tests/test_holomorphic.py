"""Holomorphic EP against implicit differentiation: geometric convergence in N,
exactness at finite |β|, and the a-posteriori diagnostics."""

import jax
import jax.numpy as jnp
import pytest

import holoode as ho

from .helpers import data, fit_slope, LinearPole, mlp, reference, rel_error, TIGHT


@pytest.mark.slow
def test_error_falls_geometrically_with_num_points():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    ns = [3, 4, 6, 8, 12]
    errors = [
        rel_error(
            ho.gradient(ho.HolomorphicEP(0.1, n), model, x, y, cost=cost, solver=TIGHT)[
                0
            ],
            ref,
        )
        for n in ns
    ]
    slope = fit_slope(ns, jnp.log(jnp.asarray(errors)))
    # error ~ (|β|/R)^N: a clear geometric rate (here R ≈ 0.6, so ≈ e^-1.8 per point).
    assert slope < -1.0, (slope, errors)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors


@pytest.mark.slow
def test_reaches_1e8_by_16_points_with_default_solver():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    grads, info = ho.gradient(ho.HolomorphicEP(0.1, 16), model, x, y, cost=cost)
    assert rel_error(grads, ref) <= 1e-8
    assert bool(info.all_reached)


def test_exact_at_finite_beta_where_classic_ep_is_not():
    model, (x, y), cost = mlp(gain=1.0), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    hep, info = ho.gradient(
        ho.HolomorphicEP(0.5, 32), model, x, y, cost=cost, solver=TIGHT
    )
    sym, _ = ho.gradient(
        ho.ClassicEP(0.5, symmetric=True), model, x, y, cost=cost, solver=TIGHT
    )
    assert rel_error(hep, ref) < 1e-9
    assert rel_error(sym, ref) > 1e-2
    assert float(jnp.max(info.radius_ratio)) < 0.6


@pytest.mark.parametrize("n", [4, 8, 16])
def test_error_estimate_tracks_true_error(n):
    model, (x, y), cost = mlp(gain=1.0), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    grads, info = ho.gradient(
        ho.HolomorphicEP(0.5, n), model, x, y, cost=cost, solver=TIGHT
    )
    true = rel_error(grads, ref)
    assert true / 10 < float(info.error_estimate) < true * 10, (
        true,
        info.error_estimate,
    )


def pole_problem():
    model = LinearPole(jnp.array(1.0), jnp.array(0.7))
    x = jnp.array([[1.0], [0.5]])
    y = jnp.array([[0.3], [-0.2]])
    return model, x, y, ho.SquaredError()


def test_radius_ratio_locates_a_known_pole():
    # u*_β = (wx + βy)/(a + β): radius of analyticity exactly a = 1.
    model, x, y, cost = pole_problem()
    for beta in [0.3, 0.6]:
        _, info = ho.gradient(
            ho.HolomorphicEP(beta, 8), model, x, y, cost=cost, solver=TIGHT
        )
        assert jnp.allclose(info.radius_ratio, beta, rtol=1e-6)


def test_circle_around_a_pole_is_refused():
    # Every point on the circle |β| = 1.5 has an equilibrium, and every solve
    # succeeds, but the circle encloses the pole: the estimate would be wrong.
    model, x, y, cost = pole_problem()
    grads, info = ho.gradient(
        ho.HolomorphicEP(1.5, 8), model, x, y, cost=cost, solver=TIGHT, throw=False
    )
    assert bool(info.all_reached)
    assert info.result == ho.RESULTS.continuation_lost
    assert rel_error(grads, reference(model, x, y, cost)) > 0.5
    with pytest.raises(Exception, match="continues analytically"):
        ho.gradient(ho.HolomorphicEP(1.5, 8), model, x, y, cost=cost, solver=TIGHT)


def test_two_points_is_symmetric_classic_ep():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    hep, _ = ho.gradient(ho.HolomorphicEP(0.2, 2), model, x, y, cost=cost, solver=TIGHT)
    sym, _ = ho.gradient(
        ho.ClassicEP(0.2, symmetric=True), model, x, y, cost=cost, solver=TIGHT
    )
    assert rel_error(hep, sym) < 1e-10


@pytest.mark.parametrize(
    "rule",
    [
        ho.HolomorphicEP(jnp.float64(0.5), 4),
        ho.ClassicEP(jnp.float64(0.1)),
        ho.ContinuousHEP(jnp.float64(0.5), 20.0),
    ],
)
def test_gradient_keeps_the_parameter_dtype_whatever_the_beta_dtype(rule):
    # A float64 β (strongly typed) must not promote a float32 model's gradient.
    model = ho.nn.HopfieldMLP((4, 5, 3), key=jax.random.key(0))
    x, y = data()
    grads, _ = ho.gradient(
        rule, model, x.astype(jnp.float32), y, cost=ho.CrossEntropy()
    )
    assert {a.dtype for a in jax.tree_util.tree_leaves(grads)} == {jnp.dtype("float32")}


def test_one_radius_per_example():
    # u*_β = (wx + βy)/(a + β): each example's radius_ratio is exactly its own |β|.
    model, x, y, cost = pole_problem()
    rule = ho.HolomorphicEP(jnp.array([0.3, 0.6]), 8)
    _, info = ho.gradient(rule, model, x, y, cost=cost, solver=TIGHT)
    assert jnp.allclose(info.radius_ratio, jnp.array([0.3, 0.6]), rtol=1e-6)
    # One circle around the pole: refused, and that example named by its ratio.
    _, lost = ho.gradient(
        ho.HolomorphicEP(jnp.array([0.5, 1.5]), 8), model, x, y, cost=cost,
        solver=TIGHT, throw=False,
    )  # fmt: skip
    assert lost.result == ho.RESULTS.continuation_lost
    assert float(lost.radius_ratio[0]) < 0.6 <= 0.9 <= float(lost.radius_ratio[1])
    # On a network: exact with every example on its own circle, and the batch
    # gradient is the mean of the examples' gradients at their own radii.
    model, (x, y), cost = mlp(gain=1.0), data(), ho.CrossEntropy()
    radii = jnp.array([0.5, 0.1, 0.3, 0.5, 0.2])
    grads, _ = ho.gradient(
        ho.HolomorphicEP(radii, 32), model, x, y, cost=cost, solver=TIGHT
    )
    assert rel_error(grads, reference(model, x, y, cost)) < 1e-9
    alone = [
        ho.gradient(
            ho.HolomorphicEP(radii[i], 32),
            model,
            x[i : i + 1],
            y[i : i + 1],
            cost=cost,
            solver=TIGHT,
        )[0]  # fmt: skip
        for i in range(len(radii))
    ]
    mean = jax.tree_util.tree_map(lambda *g: sum(g) / len(g), *alone)
    assert rel_error(grads, mean) < 1e-12
    with pytest.raises(ValueError, match="one per example"):
        ho.gradient(ho.HolomorphicEP(radii[:3], 8), model, x, y, cost=cost)
