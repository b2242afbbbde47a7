"""Classic EP's bias: order 1 one-sided, order 2 symmetric (fitted)."""

import jax.numpy as jnp
import pytest

import holoode as ho

from .helpers import data, fit_slope, mlp, reference, rel_error, TIGHT


@pytest.mark.slow
@pytest.mark.parametrize("symmetric,order", [(False, 1), (True, 2)])
def test_classic_ep_order(symmetric, order):
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    betas = [0.08, 0.04, 0.02, 0.01]
    errors = [
        rel_error(
            ho.gradient(
                ho.ClassicEP(b, symmetric=symmetric),
                model,
                x,
                y,
                cost=cost,
                solver=TIGHT,
            )[0],
            ref,
        )
        for b in betas
    ]
    slope = fit_slope(jnp.log(jnp.asarray(betas)), jnp.log(jnp.asarray(errors)))
    assert abs(slope - order) < 0.1, (slope, errors)


def test_negative_beta_is_allowed_and_zero_is_refused():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    grads, _ = ho.gradient(ho.ClassicEP(-0.01), model, x, y, cost=cost, solver=TIGHT)
    assert rel_error(grads, ref) < 0.02
    with pytest.raises(ValueError, match="non-zero"):
        ho.ClassicEP(0.0)
