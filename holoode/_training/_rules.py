"""The learning rules `holoode train` knows: name → constructor and the
configuration fields it reads."""

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .._learning import (
    BackpropThroughTime,
    ClassicEP,
    ContinuousHEP,
    HolomorphicEP,
    ImplicitDifferentiation,
)
from .._noise import NeuronNoise


class OnlinePlasticity(eqx.Module):
    """The "online" rule: `holoode.online_plasticity` as a training step (the
    batch's examples stream through one ODE in which the weights evolve).
    `learning_rate` is per unit time: `η = rate / (period · periods_per_example)`,
    so that each example moves the weights by about one SGD step of size `rate`.
    """

    beta: Array
    learning_rate: Array
    period: float = eqx.field(static=True)
    periods_per_example: int = eqx.field(static=True)


class RuleSpec(NamedTuple):
    """How a rule is built from a `TrainConfig` (with its neuron noise, `None`
    for none), and the fields it reads (`noise_std` among them if it takes
    noise)."""

    build: Callable[[Any, NeuronNoise | None], Any]
    fields: tuple[str, ...]


def _online(c, noise):
    del noise
    rate = c.learning_rate / (c.period * c.num_periods)
    return OnlinePlasticity(
        jnp.asarray(c.beta), jnp.asarray(rate), c.period, c.num_periods
    )


RULES: dict[str, RuleSpec] = {
    "hep": RuleSpec(
        lambda c, noise: HolomorphicEP(c.beta, c.num_points, noise=noise),
        ("beta", "num_points", "noise_std", "beta_backoff"),
    ),
    "continuous": RuleSpec(
        lambda c, noise: ContinuousHEP(c.beta, c.period, c.num_periods, noise=noise),
        ("beta", "period", "num_periods", "noise_std"),
    ),
    "ep": RuleSpec(
        lambda c, noise: ClassicEP(c.beta, noise=noise), ("beta", "noise_std")
    ),
    "ep-sym": RuleSpec(
        lambda c, noise: ClassicEP(c.beta, symmetric=True, noise=noise),
        ("beta", "noise_std"),
    ),
    "bp": RuleSpec(lambda c, noise: ImplicitDifferentiation(), ()),
    "bptt": RuleSpec(lambda c, noise: BackpropThroughTime(), ()),
    "online": RuleSpec(_online, ("beta", "period", "num_periods", "learning_rate")),
}


def make_rule(config):
    """The learning rule named by `config.rule`."""
    noise = NeuronNoise(config.noise_std) if config.noise_std > 0 else None
    return RULES[config.rule].build(config, noise)
