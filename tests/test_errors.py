"""Bad input is refused with a message that names the problem and the fix."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import optimistix as optx
import pytest

import holoode as ho

from .helpers import AbsEnergy, data, mlp, QuarticHopfield


class ConjEnergy(QuarticHopfield):
    def energy(self, u, x):  # pyright: ignore
        return 0.5 * jnp.sum(u * jnp.conj(u)) - u @ (self.U @ x)


class MaximumEnergy(QuarticHopfield):
    def energy(self, u, x):  # pyright: ignore
        return 0.5 * jnp.sum(u**2) - jnp.sum(jnp.maximum(u, 0.0) * (self.U @ x))


class ReluWeights(QuarticHopfield):
    def energy(self, u, x):  # pyright: ignore
        return 0.5 * jnp.sum(u**2) - u @ (jnp.maximum(self.U, 0.0) @ x)


@pytest.mark.parametrize(
    "cls,where",
    [
        (AbsEnergy, "the state u"),
        (ConjEnergy, "the state u"),
        (MaximumEnergy, "the state u"),
        (ReluWeights, r"the parameter model\.U"),
    ],
)
def test_non_holomorphic_energy_is_detected(cls, where):
    model = cls(key=jr.key(0))
    x, _ = data()
    with pytest.raises(ho.NotHolomorphicError, match="not holomorphic in " + where):
        ho.check_holomorphic(model, x[0])


@pytest.mark.slow
def test_holomorphic_models_pass_the_check():
    x, y = data()
    ho.check_holomorphic(mlp(), x[0], y[0], cost=ho.CrossEntropy(), num_circles=8)
    xq, yq = data(4, 3, labels=False)
    ho.check_holomorphic(
        QuarticHopfield(key=jr.key(0)),
        xq[0],
        yq[0],
        cost=ho.SquaredError(),
        num_circles=8,
    )


def test_too_few_steps_raises_with_the_fix():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    solver = ho.FixedPointIteration(max_steps=3)
    with pytest.raises(Exception, match="raise `max_steps`"):
        ho.gradient(ho.HolomorphicEP(0.1, 4), model, x, y, cost=cost, solver=solver)
    grads, info = ho.gradient(
        ho.HolomorphicEP(0.1, 4), model, x, y, cost=cost, solver=solver, throw=False
    )
    assert not bool(info.all_reached)
    assert info.result == ho.RESULTS.max_steps_reached


def test_a_cause_found_inside_the_solver_library_is_kept():
    """`RESULTS` is chained onto Diffrax's (and Optimistix's, Lineax's): an ODE
    whose step size would fall below `dtmin` reports Diffrax's `dt_min_reached`
    rather than a generic failure, and the error adds holoode's fix."""
    assert ho.RESULTS.promote(optx.RESULTS.singular) == ho.RESULTS.singular
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    controller = dfx.PIDController(rtol=1e-10, atol=1e-10, dtmin=1.0, force_dtmin=False)
    solver = ho.SteadyStateODE(stepsize_controller=controller, dt0=1.0)
    rule = ho.ImplicitDifferentiation()
    _, info = ho.gradient(rule, model, x, y, cost=cost, solver=solver, throw=False)
    assert info.result == ho.RESULTS.dt_min_reached
    assert not bool(info.all_reached)
    with pytest.raises(Exception, match="found inside the equilibrium solver"):
        ho.gradient(rule, model, x, y, cost=cost, solver=solver)


class _Repelling(ho.AbstractEnergyModel):
    """`E = −½|u|² − u·(Ux)`: unbounded below, the dynamics run off to infinity."""

    U: jax.Array

    def energy(self, u, x):
        return -0.5 * jnp.sum(u**2) - u @ (self.U @ x)

    def init_state(self, x):
        return jnp.zeros(self.U.shape[0], x.dtype)

    def readout(self, u, x):
        return u[:3]


@pytest.mark.parametrize(
    "solver",
    [ho.FixedPointIteration(max_steps=200), ho.SteadyStateODE(max_steps=200)],
    ids=["fixed_point", "ode"],
)
def test_diverging_dynamics_is_reported(solver):
    (x, y), cost = data(), ho.CrossEntropy()
    model = _Repelling(jnp.ones((5, 4), jnp.float64))
    _, info = ho.gradient(
        ho.ImplicitDifferentiation(), model, x, y, cost=cost, solver=solver, throw=False
    )
    assert info.result != ho.RESULTS.successful
    assert not bool(info.all_reached)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda x, y: (x[0], y), "`x` needs|same leading batch axis"),
        (lambda x, y: (x, y[:2]), "same leading batch axis"),
        (lambda x, y: (x.astype(jnp.float32), y), "dtype float32"),
        (lambda x, y: (x.astype(jnp.int32), y), "floating-point"),
        (lambda x, y: (x[:, :3], y), "HopfieldMLP layer 0"),
        (lambda x, y: (x, y.astype(jnp.float64)), "integer label"),
    ],
)
def test_wrong_shapes_and_dtypes_name_the_argument(change, match):
    model, (x, y) = mlp(), data()
    bad_x, bad_y = change(x, y)
    with pytest.raises(ValueError, match=match):
        ho.gradient(
            ho.ImplicitDifferentiation(), model, bad_x, bad_y, cost=ho.CrossEntropy()
        )


def test_bad_rule_arguments():
    with pytest.raises(ValueError, match="positive"):
        ho.HolomorphicEP(beta=-0.1)
    with pytest.raises(ValueError, match="≥ 2"):
        ho.HolomorphicEP(beta=0.1, num_points=1)
    with pytest.raises(ValueError, match="warm_start"):
        ho.HolomorphicEP(beta=0.1, warm_start="previous")
    with pytest.raises(ValueError, match="learning rule"):
        ho.gradient("hep", mlp(), *data(), cost=ho.CrossEntropy())
