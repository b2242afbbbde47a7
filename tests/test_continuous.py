"""Continuous-time hEP: convergence in the period (fitted order), the Richardson
correction, agreement with the N-point estimator, diagnostics and bad input."""

import jax.numpy as jnp
import pytest

import holoode as ho

from .helpers import data, fit_slope, LinearPole, mlp, reference, rel_error, TIGHT


def problem():
    return mlp(), *data(), ho.CrossEntropy()


def relaxation_time(model, x, y, cost):
    return float(jnp.max(ho.relaxation_time(model, x, y, cost=cost, solver=TIGHT)))


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_relaxation_time_is_exact_on_a_linear_model(a):
    # E = ½ a u² − w x u: du/dt = −a u + w x, so every perturbation decays like e^{−at}.
    model = LinearPole(jnp.array(a), jnp.array(0.7))
    x, y = jnp.ones((3, 1)), jnp.zeros((3, 1))
    tau = ho.relaxation_time(model, x, y, cost=ho.SquaredError(), solver=TIGHT)
    assert tau.shape == (3,)
    assert jnp.allclose(tau, 1 / a, rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("richardson,order", [(False, 2), (True, 4)])
def test_error_falls_with_the_period_at_the_fitted_order(richardson, order):
    model, x, y, cost = problem()
    ref = reference(model, x, y, cost)
    periods = [50.0, 100.0, 200.0]
    errors = [
        rel_error(
            ho.gradient(
                ho.ContinuousHEP(0.1, period, richardson=richardson),
                model,
                x,
                y,
                cost=cost,
            )[0],
            ref,
        )
        for period in periods
    ]
    slope = fit_slope(jnp.log(jnp.asarray(periods)), jnp.log(jnp.asarray(errors)))
    assert abs(slope + order) < 0.3, (slope, errors)


@pytest.mark.slow
def test_1e3_within_100_relaxation_times_in_one_period():
    model, x, y, cost = problem()
    tau = relaxation_time(model, x, y, cost)
    assert 1.0 < tau < 5.0  # the network relaxes in a few time units
    rule = ho.ContinuousHEP(0.1, period=100 * tau, num_periods=1, richardson=True)
    grads, info = ho.gradient(rule, model, x, y, cost=cost)
    assert rel_error(grads, reference(model, x, y, cost)) <= 1e-3
    assert bool(info.all_reached)


@pytest.mark.slow
def test_long_period_agrees_with_many_point_hep():
    model, x, y, cost = problem()
    slow, _ = ho.gradient(ho.ContinuousHEP(0.3, 800.0), model, x, y, cost=cost)
    hep, _ = ho.gradient(
        ho.HolomorphicEP(0.3, 16), model, x, y, cost=cost, solver=TIGHT
    )
    assert rel_error(slow, hep) < 2e-4


def test_n_samples_per_period_alias_like_n_point_hep():
    # The accumulator samples the signal at `num_samples` phases per period: at a
    # long period it carries the N-point estimator's aliasing error, no more.
    model, x, y, cost = problem()
    rule = ho.ContinuousHEP(0.3, 800.0, num_samples=4)
    solver = ho.SteadyStateODE(rtol=1e-8, atol=1e-8, max_steps=100_000)
    slow, _ = ho.gradient(rule, model, x, y, cost=cost, solver=solver)
    hep, _ = ho.gradient(ho.HolomorphicEP(0.3, 4), model, x, y, cost=cost, solver=TIGHT)
    aliasing = rel_error(hep, reference(model, x, y, cost))
    assert aliasing > 3e-3  # four points at |β| = 0.3 alias visibly
    assert rel_error(slow, hep) < aliasing / 10


@pytest.mark.slow
def test_lag_estimate_tracks_the_error_and_split_state_agrees():
    model, x, y, cost = problem()
    ref = reference(model, x, y, cost)
    rule = ho.ContinuousHEP(0.1, 50.0)
    grads, info = ho.gradient(rule, model, x, y, cost=cost)
    true = rel_error(grads, ref)
    assert true / 10 < float(info.error_estimate) < true * 10, (
        true,
        info.error_estimate,
    )
    split, _ = ho.gradient(
        rule, model, x, y, cost=cost, solver=ho.SteadyStateODE(split_complex=True)
    )
    assert rel_error(split, grads) < 1e-6


def test_bad_input():
    with pytest.raises(ValueError, match="period"):
        ho.ContinuousHEP(0.1, period=0.0)
    with pytest.raises(ValueError, match="positive"):
        ho.ContinuousHEP(-0.1)
    with pytest.raises(ValueError, match="num_periods"):
        ho.ContinuousHEP(0.1, num_periods=0)
    model, x, y, cost = problem()
    with pytest.raises(ValueError, match="ODE integrator"):
        ho.gradient(ho.ContinuousHEP(0.1), model, x, y, cost=cost, solver=ho.RootFind())
    with pytest.raises(Exception, match="max_steps"):
        ho.gradient(
            ho.ContinuousHEP(0.1, 50.0),
            model,
            x,
            y,
            cost=cost,
            solver=ho.SteadyStateODE(max_steps=5),
        )
