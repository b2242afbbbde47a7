"""Online plasticity learns a real data set (scikit-learn digits)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

import holoode as ho
from holoode._equilibrium.batched import initial_states, solve_batch


def load_digits():
    train, test = ho.data.load("digits", "train"), ho.data.load("digits", "test")
    (x_train, y_train), (x_test, y_test) = (
        s.get(jnp.arange(len(s))) for s in (train, test)
    )
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    return flat(x_train), flat(x_test), y_train, y_test


def accuracy(model, x, y, solver):
    free = solve_batch(
        solver, model, x, y, ho.CrossEntropy(), 0.0, initial_states(model, x, x.dtype)
    )
    logits = jax.vmap(model.readout)(free.value, x)
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == y))


@pytest.mark.slow
def test_online_plasticity_learns_digits():
    x_train, x_test, y_train, y_test = load_digits()
    model = ho.nn.HopfieldMLP((64, 32, 10), key=jr.key(0))
    solver = ho.FixedPointIteration(step_size=0.5, rtol=1e-4, atol=1e-4, max_steps=1000)
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    before = accuracy(model, x_test, y_test, solver)
    trained, _ = ho.online_plasticity(
        model,
        x_train[:400],
        y_train[:400],
        cost=ho.CrossEntropy(),
        period=20.0,
        learning_rate=0.02,
    )
    after = accuracy(trained, x_test, y_test, solver)
    # Chance is 10%; 400 examples, each seen once for one period, reach > 40%.
    assert before < 0.2 and after > 0.4, (before, after)


def test_online_plasticity_refuses_bad_input_and_reports_failure():
    x, _, y, _ = load_digits()
    model = ho.nn.HopfieldMLP((64, 8, 10), key=jr.key(0))
    with pytest.raises(ValueError, match="period > 0"):
        ho.online_plasticity(model, x[:4], y[:4], cost=ho.CrossEntropy(), period=0.0)
    with pytest.raises(RuntimeError, match="lower `learning_rate`"):
        ho.online_plasticity(
            model, x[:4], y[:4], cost=ho.CrossEntropy(), period=20.0, max_steps=2
        )
