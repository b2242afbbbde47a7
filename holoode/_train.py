"""A compact training loop on the embedded digits data (the `holoode train` job)."""

import time
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from ._costs import CrossEntropy
from ._equilibrium import FixedPointIteration, SteadyStateODE
from ._gradient import gradient
from ._learning import (
    BackpropThroughTime,
    ClassicEP,
    ContinuousHEP,
    HolomorphicEP,
    ImplicitDifferentiation,
)
from ._learning.base import initial_states, solve_batch
from ._noise import NeuronNoise
from ._solution import RESULTS
from .nn import HopfieldMLP


def load_digits(seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's 8×8 handwritten digits (shipped inside the package, no
    download), scaled to [0, 1], with a fixed stratified train/test split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    data = sk_load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    return train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )


def make_rule(config: "TrainConfig"):
    """The learning rule named by `config.rule`, with the config's noise."""
    noise = NeuronNoise(config.noise_std) if config.noise_std > 0 else None
    rules = {
        "hep": lambda: HolomorphicEP(config.beta, config.num_points, noise=noise),
        "ep": lambda: ClassicEP(config.beta, noise=noise),
        "ep-sym": lambda: ClassicEP(config.beta, symmetric=True, noise=noise),
        "continuous": lambda: ContinuousHEP(
            config.beta, config.period, config.num_periods, noise=noise
        ),
        "bp": lambda: ImplicitDifferentiation(),
        "bptt": lambda: BackpropThroughTime(),
    }
    if config.rule not in rules:
        raise ValueError(
            f"Unknown rule {config.rule!r}; choose one of {sorted(rules)}."
        )
    if noise is not None and config.rule in ("bp", "bptt"):
        raise ValueError(f"Rule {config.rule!r} has no neuron-noise option.")
    return rules[config.rule]()


RULES = ("hep", "ep", "ep-sym", "continuous", "bp", "bptt")


@dataclass
class TrainConfig:
    rule: str = "hep"
    beta: float = 0.5
    num_points: int = 4
    period: float = 50.0
    num_periods: int = 1
    noise_std: float = 0.0
    hidden: tuple[int, ...] = (128,)
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 0.1
    momentum: float = 0.9
    seed: int = 0


def accuracy(model, x, y, solver) -> float:
    cost = CrossEntropy()
    u0 = initial_states(model, x, x.dtype)
    sol = solve_batch(solver, model, x, y, cost, 0.0, u0)
    logits = jax.vmap(model.readout)(sol.value, x)
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == y))


def train(config: TrainConfig, log=print) -> dict:
    """Train a Hopfield MLP on digits with the chosen rule; returns final metrics."""
    x_train, x_test, y_train, y_test = load_digits()
    key = jr.key(config.seed)
    sizes = (x_train.shape[1], *config.hidden, 10)
    model_key, key = jr.split(key)
    model = HopfieldMLP(sizes, key=model_key)
    rule = make_rule(config)
    solver = FixedPointIteration(step_size=0.5, rtol=1e-4, atol=1e-4, max_steps=1000)
    # ContinuousHEP runs the dynamics in time: it takes an ODE integrator.
    rule_solver = SteadyStateODE() if config.rule == "continuous" else solver
    cost = CrossEntropy()
    optim = optax.sgd(config.learning_rate, momentum=config.momentum)
    opt_state = optim.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, opt_state, x, y, key):
        grads, info = gradient(
            rule, model, x, y, cost=cost, solver=rule_solver, key=key, throw=False
        )
        ok = info.result == RESULTS.successful
        # A skipped step must leave no trace: zero the gradient (so NaNs never
        # reach the optimiser) and keep both the model and the optimiser state.
        grads = jax.tree_util.tree_map(lambda g: jnp.where(ok, g, 0.0), grads)
        updates, new_state = optim.update(grads, opt_state)
        new_model = eqx.apply_updates(model, updates)

        def keep(new, old):
            return jnp.where(ok, new, old) if eqx.is_array(new) else new

        model = jax.tree_util.tree_map(keep, new_model, model)
        opt_state = jax.tree_util.tree_map(keep, new_state, opt_state)
        return model, opt_state, info.loss, info.result._value

    rng = np.random.default_rng(config.seed)
    n = len(x_train) // config.batch_size * config.batch_size
    start = time.perf_counter()
    reasons: dict[str, int] = {}
    for epoch in range(config.epochs):
        order = rng.permutation(len(x_train))[:n].reshape(-1, config.batch_size)
        losses = []
        for idx in order:
            key, step_key = jr.split(key)
            model, opt_state, loss, code = step(
                model,
                opt_state,
                jnp.asarray(x_train[idx]),
                jnp.asarray(y_train[idx]),
                step_key,
            )
            losses.append(float(loss))
            if int(code) != 0:  # the step was skipped: the parameters are unchanged
                reason = RESULTS._index_to_message[int(code)].split(".")[0]
                reasons[reason] = reasons.get(reason, 0) + 1
        if epoch % 5 == 4 or epoch == config.epochs - 1:
            test_acc = accuracy(model, jnp.asarray(x_test), jnp.asarray(y_test), solver)
            log(
                f"epoch {epoch + 1:3d}  train loss {np.mean(losses):.4f}  "
                f"test accuracy {100 * test_acc:.2f}%  "
                f"skipped steps {sum(reasons.values())}  "
                f"({time.perf_counter() - start:.0f} s)"
            )
            for reason, count in reasons.items():
                log(f"    skipped {count}×: {reason}")
    return {
        "rule": config.rule,
        "test_accuracy": test_acc,
        "train_loss": float(np.mean(losses)),
        "skipped_steps": sum(reasons.values()),
        "seconds": time.perf_counter() - start,
    }
