"""Tolerances that mean distance, honest hEP diagnostics, and refused settings.

The references are closed forms: a linear network whose equilibrium is `A⁻¹ b`
and whose fixed-point map contracts as slowly as a trained Hopfield network's
(rate 0.98), and a network with a single pole at `β = −a`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import holoode as ho

from .helpers import data, EXACT, LinearPole, mlp, reference, rel_error, TIGHT


class SlowLinear(ho.AbstractEnergyModel):
    """`E = ½ uᵀAu − u·(Ux)` with the eigenvalues of `A` spread over
    `[0.02, 1]`: the map `u ← u − ∇E` contracts by 0.98 per step, and the
    equilibrium is `A⁻¹Ux`."""

    A: jax.Array
    U: jax.Array
    V: jax.Array

    def __init__(self, n=12, n_in=3, n_out=2, *, key=jr.key(0)):
        k1, k2, k3 = jr.split(key, 3)
        q, _ = jnp.linalg.qr(jr.normal(k1, (n, n), jnp.float64))
        eigenvalues = jnp.linspace(0.02, 1.0, n)
        self.A = (q * eigenvalues) @ q.T
        self.U = jr.normal(k2, (n, n_in), jnp.float64)
        self.V = jr.normal(k3, (n_out, n), jnp.float64) / n**0.5

    def energy(self, u, x):
        return 0.5 * u @ self.A @ u - u @ (self.U @ x)

    def init_state(self, x):
        return jnp.zeros(self.A.shape[0], x.dtype)

    def readout(self, u, x):
        return self.V @ u


def _distance(solver, model, x):
    field = lambda u: model.vector_field(u, x, 0, 0.0, ho.SquaredError())  # noqa: E731
    sol = solver.solve(field, model.init_state(x), differentiable=False)
    exact = jnp.linalg.solve(model.A, model.U @ x)
    rms = lambda v: float(jnp.sqrt(jnp.mean(v**2)))  # noqa: E731
    return rms(sol.value - exact), rms(exact), sol


@pytest.mark.parametrize(
    "make",
    [
        lambda tol: ho.FixedPointIteration(rtol=tol, atol=tol, max_steps=5000),
        lambda tol: ho.AndersonAcceleration(rtol=tol, atol=tol, max_steps=5000),
    ],
    ids=["fixed_point", "anderson"],
)
def test_tolerance_bounds_the_distance_to_the_equilibrium(make):
    model, x = SlowLinear(), jnp.array([0.3, -0.8, 0.5])
    errors = []
    for tol in (1e-4, 1e-6, 1e-8):
        distance, size, sol = _distance(make(tol), model, x)
        assert sol.result == ho.RESULTS.successful
        # The tolerance is `atol + rtol |u|`; the estimate of the rate is
        # approximate, so allow a factor 2 (a step-size test misses by ~50×).
        assert distance <= 2 * tol * (1 + size), (tol, distance)
        errors.append(distance)
    assert errors[2] < errors[0] / 1e3, errors


def test_hep_gradient_error_follows_the_tolerance():
    model, cost = SlowLinear(), ho.SquaredError()
    x = jr.uniform(jr.key(1), (3, 3), jnp.float64)
    y = jr.normal(jr.key(2), (3, 2), jnp.float64)
    ref = reference(model, x, y, cost)
    errors = []
    for tol in (1e-5, 1e-8):
        solver = ho.FixedPointIteration(rtol=tol, atol=tol, max_steps=5000)
        # A linear network: its nudged equilibria are rational in β with poles
        # far away, so N = 8 is exact up to the solves.
        grads, info = ho.gradient(
            ho.HolomorphicEP(0.05, 8), model, x, y, cost=cost, solver=solver
        )
        error = rel_error(grads, ref)
        errors.append(error)
        # The solve error is in the estimate, within a factor 3 either way.
        assert error / 3 <= float(info.error_estimate), (error, info.error_estimate)
    assert errors[0] < 1e-2 and errors[1] < errors[0] / 100, errors


def _pole_problem():
    model = LinearPole(jnp.array(1.0), jnp.array(0.7))
    x = jnp.array([[1.0], [0.5], [-0.4]])
    y = jnp.array([[0.3], [-0.2], [0.9]])
    return model, x, y, ho.SquaredError()


@pytest.mark.parametrize("n", [4, 8, 16])
def test_error_estimate_is_never_below_a_third_of_the_true_error(n):
    # The radius is exactly 1; from far inside the disc to beyond it, the
    # estimate is at least a third of the true error, or the result is refused.
    model, x, y, cost = _pole_problem()
    ref = reference(model, x, y, cost)
    for beta in (0.1, 0.3, 0.6, 0.8, 0.95, 1.2, 2.0):
        grads, info = ho.gradient(
            ho.HolomorphicEP(beta, n), model, x, y, cost=cost, solver=TIGHT, throw=False
        )
        error = rel_error(grads, ref)
        refused = info.result != ho.RESULTS.successful
        assert refused or float(info.error_estimate) >= error / 3, (
            beta,
            error,
            info.error_estimate,
        )
        if beta > 1:
            assert refused, (beta, error)


@pytest.mark.slow
def test_error_estimate_on_a_hopfield_network_near_its_radius():
    model, (x, y), cost = mlp(gain=1.0), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    for beta in (0.3, 0.5, 0.7):
        for n in (4, 8):
            grads, info = ho.gradient(
                ho.HolomorphicEP(beta, n),
                model,
                x,
                y,
                cost=cost,
                solver=TIGHT,
                throw=False,
            )
            error = rel_error(grads, ref)
            if info.result == ho.RESULTS.successful:
                assert float(info.error_estimate) >= error / 3, (beta, n, error)


@pytest.mark.slow
def test_circle_far_beyond_the_radius_names_the_circle_not_the_solver():
    # At |β| = 50 the solves fail too; the cause to report is the circle.
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    solver = ho.AndersonAcceleration(max_steps=200)
    _, info = ho.gradient(
        ho.HolomorphicEP(50.0, 8), model, x, y, cost=cost, solver=solver, throw=False
    )
    assert float(jnp.max(info.radius_ratio)) >= 0.9
    assert info.result == ho.RESULTS.continuation_lost
    with pytest.raises(Exception, match="continues analytically"):
        ho.gradient(ho.HolomorphicEP(50.0, 8), model, x, y, cost=cost, solver=solver)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ho.FixedPointIteration(step_size=0), "step_size"),
        (lambda: ho.FixedPointIteration(step_size=2.5), "step_size"),
        (lambda: ho.AndersonAcceleration(step_size=-1.0), "step_size"),
        (lambda: ho.RootFind(rtol=-1, atol=-1), "rtol"),
        (lambda: ho.SteadyStateODE(rtol=0, atol=0), "never be met"),
        (lambda: ho.FixedPointIteration(atol=float("nan")), "atol"),
        (lambda: ho.AndersonAcceleration(max_steps=0), "max_steps"),
        (lambda: ho.RootFind(max_steps=2.5), "max_steps"),
        (lambda: ho.AndersonAcceleration(memory=0), "memory"),
        (lambda: ho.HolomorphicEP(beta=float("inf")), "finite positive"),
        (lambda: ho.HolomorphicEP(beta=-0.1), "finite positive"),
        (lambda: ho.HolomorphicEP(max_radius_ratio=-1), "max_radius_ratio"),
        (lambda: ho.HolomorphicEP(max_radius_ratio=1.5), "max_radius_ratio"),
        (lambda: ho.HolomorphicEP(num_points=1), "num_points"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_numpy_integers_are_accepted_where_integers_are_expected():
    rule = ho.HolomorphicEP(0.1, np.int64(4))
    assert rule.num_points == 4 and type(rule.num_points) is int
    solver = ho.AndersonAcceleration(max_steps=np.int64(50))
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    grads, _ = ho.gradient(rule, model, x, y, cost=cost, solver=solver)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert eqx.tree_equal(rule, ho.HolomorphicEP(0.1, 4))


class _TanhEnergy(ho.AbstractEnergyModel):
    """`E = ½|u|² − ½ r·Wr − r·Ux`, `r = tanh u`: gradient descent with step 1
    cycles on it (the synchronous update of the primitive form does not)."""

    W: jax.Array
    U: jax.Array
    V: jax.Array

    def energy(self, u, x):
        r = jnp.tanh(u)
        return 0.5 * u @ u - 0.5 * r @ self.W @ r - r @ (self.U @ x)

    def init_state(self, x):
        return jnp.zeros(self.W.shape[0], x.dtype)

    def readout(self, u, x):
        return self.V @ jnp.tanh(u)


def test_default_fixed_point_step_suits_energy_models_too():
    k = jr.split(jr.key(0), 4)
    w = jr.normal(k[0], (6, 6), jnp.float64) / 6**0.5
    model = _TanhEnergy(
        0.5 * (w + w.T),
        jr.normal(k[1], (6, 3), jnp.float64),
        jr.normal(k[2], (2, 6), jnp.float64),
    )
    x = jr.uniform(k[3], (4, 3), jnp.float64)
    y = jnp.array([0, 1, 1, 0])
    cost = ho.CrossEntropy()
    grads, info = ho.gradient(
        ho.ImplicitDifferentiation(),
        model,
        x,
        y,
        cost=cost,
        solver=ho.FixedPointIteration(),
    )
    assert bool(info.all_reached) and int(info.num_steps.max()) < 1000
    tight = ho.AndersonAcceleration(rtol=1e-12, atol=1e-12)
    exact, _ = ho.gradient(EXACT, model, x, y, cost=cost, solver=tight)
    assert rel_error(grads, exact) < 1e-6
