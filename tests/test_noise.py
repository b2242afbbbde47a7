"""Neuron noise: reproducible with a key, averaged explicitly, finite β beats small
β, and a diverging noisy run is reported."""

import jax.numpy as jnp
import jax.random as jr
import pytest

import holoode as ho

from .helpers import data, flat, mlp, QuarticHopfield, reference


def cosine(a, b):
    a, b = flat(a), flat(b)
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


NOISE = ho.NeuronNoise(0.04, duration=20.0, samples=20)


@pytest.mark.slow
def test_reproducible_with_a_key_and_different_across_keys():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    rule = ho.HolomorphicEP(0.4, 6, noise=NOISE)
    a, _ = ho.gradient(
        rule, model, x, y, cost=cost, key=jr.key(0), solver=ho.RootFind()
    )
    b, _ = ho.gradient(
        rule, model, x, y, cost=cost, key=jr.key(0), solver=ho.RootFind()
    )
    c, _ = ho.gradient(
        rule, model, x, y, cost=cost, key=jr.key(1), solver=ho.RootFind()
    )
    assert jnp.array_equal(flat(a), flat(b))
    assert not jnp.array_equal(flat(a), flat(c))
    with pytest.raises(ValueError, match="PRNG key"):
        ho.gradient(rule, model, x, y, cost=cost, solver=ho.RootFind())


@pytest.mark.slow
def test_finite_beta_is_robust_to_noise_where_small_beta_is_not():
    # The paper's Table 1 effect, on gradients: cosine similarity to the exact
    # gradient over 4 keys, mean and spread.
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    rules = {
        "ep-0.1": ho.ClassicEP(0.1, noise=NOISE),
        "hep-0.4": ho.HolomorphicEP(0.4, 10, noise=NOISE),
    }
    stats = {}
    for name, rule in rules.items():
        cos = [
            cosine(
                ho.gradient(
                    rule, model, x, y, cost=cost, key=jr.key(k), solver=ho.RootFind()
                )[0],
                ref,
            )
            for k in range(4)
        ]
        stats[name] = (sum(cos) / 4, max(cos) - min(cos))
    assert stats["hep-0.4"][0] > 0.999, stats
    assert stats["ep-0.1"][0] < 0.99, stats
    assert stats["hep-0.4"][1] < stats["ep-0.1"][1], stats


@pytest.mark.slow
def test_continuous_hep_with_noise_averages_over_the_run():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    ref = reference(model, x, y, cost)
    rule = ho.ContinuousHEP(0.4, 50.0, num_periods=2, noise=NOISE)
    grads, info = ho.gradient(rule, model, x, y, cost=cost, key=jr.key(0))
    assert cosine(grads, ref) > 0.998
    assert bool(info.all_reached)


@pytest.mark.slow
def test_diverging_noisy_run_is_reported_not_averaged():
    model = QuarticHopfield(key=jr.key(0))
    x, y = data(4, 3, labels=False)
    # Euler–Maruyama with a large step on the quartic energy explodes.
    rule = ho.ClassicEP(
        0.1, noise=ho.NeuronNoise(30.0, duration=20.0, dt=0.5, samples=4)
    )
    _, info = ho.gradient(
        rule,
        model,
        x,
        y,
        cost=ho.SquaredError(),
        key=jr.key(0),
        solver=ho.RootFind(),
        throw=False,
    )
    assert info.result == ho.RESULTS.nonfinite
    with pytest.raises(Exception, match="NaN or inf"):
        ho.gradient(
            rule,
            model,
            x,
            y,
            cost=ho.SquaredError(),
            key=jr.key(0),
            solver=ho.RootFind(),
        )


def test_bad_noise_arguments():
    with pytest.raises(ValueError, match="std"):
        ho.NeuronNoise(-1.0)
    with pytest.raises(ValueError, match="dt"):
        ho.NeuronNoise(0.1, duration=1.0, dt=2.0)
