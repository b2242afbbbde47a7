"""ContinuousHEP refuses what it cannot deliver: a period too short for the network
(a large error estimate fails instead of returning a wrong gradient), and solver
settings it would otherwise have to ignore; the settings it takes are honoured."""

import diffrax as dfx
import jax.numpy as jnp
import jax.random as jr
import pytest

import holoode as ho

from .helpers import data, mlp, reference, rel_error


def problem():
    return mlp(), *data(), ho.CrossEntropy()


def run(rule, solver=None, **kwargs):
    model, x, y, cost = problem()
    return ho.gradient(rule, model, x, y, cost=cost, solver=solver, **kwargs)


@pytest.mark.parametrize("period", [1.0, 0.01])
def test_period_at_or_below_the_relaxation_time_fails(period):
    model, x, y, cost = problem()
    rule = ho.ContinuousHEP(0.1, period)
    grads, info = ho.gradient(rule, model, x, y, cost=cost, throw=False)
    # The estimate is badly wrong, and the result says so.
    assert rel_error(grads, reference(model, x, y, cost)) > 0.5
    assert float(info.error_estimate) > rule.max_error_estimate
    assert info.result == ho.RESULTS.period_too_short
    with pytest.raises(Exception, match="period") as error:
        ho.gradient(rule, model, x, y, cost=cost)
    assert "holoode.relaxation_time" in str(error.value)


def test_a_long_enough_period_passes_and_the_threshold_is_the_users():
    model, x, y, cost = problem()
    grads, info = ho.gradient(ho.ContinuousHEP(0.1, 50.0), model, x, y, cost=cost)
    assert info.result == ho.RESULTS.successful
    assert rel_error(grads, reference(model, x, y, cost)) < 0.1
    # The same run against a threshold below its own estimate is refused.
    strict = ho.ContinuousHEP(
        0.1, 50.0, max_error_estimate=float(info.error_estimate) / 2
    )
    _, info = ho.gradient(strict, model, x, y, cost=cost, throw=False)
    assert info.result == ho.RESULTS.period_too_short


def test_bad_thresholds_and_sample_counts_are_refused():
    with pytest.raises(ValueError, match="max_error_estimate"):
        ho.ContinuousHEP(0.1, max_error_estimate=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        ho.ContinuousHEP(0.1, num_samples=2)


FIXED = dict(stepsize_controller=dfx.ConstantStepSize(), dt0=0.25)


@pytest.mark.parametrize("max_steps,ok", [(48, True), (47, False)])
def test_fixed_step_and_max_steps_are_honoured(max_steps, ok):
    # Period 8 with 16 samples: segments of 0.5, two steps of 0.25 each; warm-up
    # 4 + one period 8 = 12 time units = exactly 48 steps.
    solver = ho.SteadyStateODE(dfx.Euler(), max_steps=max_steps, **FIXED)
    _, info = run(
        ho.ContinuousHEP(0.1, 8.0, max_error_estimate=10.0), solver, throw=False
    )
    assert int(info.num_steps[0, 0]) == 48
    expected = ho.RESULTS.successful if ok else ho.RESULTS.max_steps_reached
    assert info.result == expected


def test_tolerances_are_honoured():
    rule = ho.ContinuousHEP(0.1, 50.0)
    tight, tight_info = run(rule)  # the dtype's default tolerance (float64: 1e-10)
    loose, loose_info = run(rule, ho.SteadyStateODE(rtol=1e-3, atol=1e-3))
    assert int(loose_info.num_steps[0, 0]) < int(tight_info.num_steps[0, 0]) / 4
    assert rel_error(loose, tight) > 1e-6


def test_settings_that_noise_cannot_honour_are_refused():
    rule = ho.ContinuousHEP(0.1, 8.0, noise=ho.NeuronNoise(0.01))
    with pytest.raises(ValueError, match="rtol"):
        run(rule, ho.SteadyStateODE(rtol=1e-3), key=jr.key(0))


def test_a_fixed_step_without_a_step_is_refused():
    solver = ho.SteadyStateODE(stepsize_controller=dfx.ConstantStepSize())
    with pytest.raises(ValueError, match="dt0"):
        run(ho.ContinuousHEP(0.1, 8.0), solver)


def test_a_bad_period_or_beta_is_refused_by_name():
    with pytest.raises(ValueError, match="period must be a real number"):
        ho.ContinuousHEP(period="long")
    with pytest.raises(ValueError, match="β must be a real floating-point"):
        ho.HolomorphicEP(beta=jnp.array(1))
