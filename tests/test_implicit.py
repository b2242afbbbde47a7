"""Implicit differentiation (the backprop reference) against finite differences."""

import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
import pytest

import holoode as ho

from .helpers import (
    data,
    EXACT,
    flat,
    loss,
    mlp,
    perturb,
    QuarticHopfield,
    random_direction,
    reference,
    TIGHT,
)


CASES = {
    "energy-form/squared-error": (
        lambda: QuarticHopfield(key=jr.key(0)),
        lambda: data(4, 3, labels=False),
        ho.SquaredError(),
    ),
    "primitive-form/cross-entropy": (
        lambda: mlp(),
        lambda: data(4, 3),
        ho.CrossEntropy(),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_implicit_matches_central_differences(case):
    make_model, make_data, cost = CASES[case]
    model = make_model()
    x, y = make_data()
    grads = reference(model, x, y, cost)
    h = 1e-5
    for seed in range(3):
        v = random_direction(model, jr.key(seed))
        fd = (
            loss(perturb(model, v, h), x, y, cost)
            - loss(perturb(model, v, -h), x, y, cost)
        ) / (2 * h)
        analytic = jnp.dot(flat(grads), flat(v))
        assert abs(fd - analytic) <= 1e-6 * abs(analytic), (case, seed, fd, analytic)


def test_grads_are_shaped_like_filter_grad():
    import equinox as eqx

    model = mlp()
    x, y = data()
    grads, _ = ho.gradient(
        ho.ImplicitDifferentiation(), model, x, y, cost=ho.CrossEntropy()
    )
    expected = eqx.filter(model, eqx.is_inexact_array)
    assert jtu.tree_structure(grads) == jtu.tree_structure(expected)
    for g, p in zip(jtu.tree_leaves(grads), jtu.tree_leaves(expected)):
        assert g.shape == p.shape and g.dtype == p.dtype


def test_a_failed_adjoint_solve_is_named_not_blamed_on_the_inputs():
    # GMRES with one step cannot solve the adjoint system of this network.
    starved = ho.ImplicitDifferentiation(
        linear_solver=lx.GMRES(rtol=1e-12, atol=1e-12, restart=1, max_steps=1)
    )
    model = mlp()
    x, y = data()
    grads, info = ho.gradient(
        starved, model, x, y, cost=ho.CrossEntropy(), solver=TIGHT, throw=False
    )
    assert info.result == ho.RESULTS.adjoint_failed
    assert all(bool(jnp.all(jnp.isnan(g))) for g in jtu.tree_leaves(grads))
    with pytest.raises(Exception, match="adjoint linear solve.*lineax.LU"):
        ho.gradient(starved, model, x, y, cost=ho.CrossEntropy(), solver=TIGHT)
    # Solved directly, the same network's gradient is fine.
    _, info = ho.gradient(EXACT, model, x, y, cost=ho.CrossEntropy(), solver=TIGHT)
    assert info.result == ho.RESULTS.successful
