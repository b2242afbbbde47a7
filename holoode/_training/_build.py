"""From a `TrainConfig` to the objects a run needs: model, rule, solvers, optimiser."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax

from .._activations import hard_tanh, shifted_sigmoid
from .._equilibrium import (
    AndersonAcceleration,
    FixedPointIteration,
    RootFind,
    SteadyStateODE,
)
from ..nn import HopfieldConvNet, HopfieldMLP
from ._config import TrainConfig


def model_dtype(config: TrainConfig):
    if config.dtype == "float64" and not jax.config.read("jax_enable_x64"):
        raise ValueError(
            "TrainConfig(dtype='float64') needs 64-bit JAX: call "
            "`jax.config.update('jax_enable_x64', True)` at start-up (the command "
            "line does this for `--set dtype=float64`)."
        )
    return jnp.float64 if config.dtype == "float64" else jnp.float32


def make_model(config: TrainConfig, image_shape, num_classes: int, key):
    """The network named by `config.model` for images `(H, W, C)`."""
    dtype = model_dtype(config)
    kwargs = dict(key=key, dtype=dtype, gain=config.gain)
    if config.activation != "default":
        kwargs["activation"] = {"sigmoid": shifted_sigmoid, "hard-tanh": hard_tanh}[
            config.activation
        ]
    h, w, c = image_shape
    if config.model == "mlp":
        sizes = (h * w * c, *config.hidden, num_classes)
        return HopfieldMLP(sizes, **kwargs)
    return HopfieldConvNet(
        (c, h, w), config.channels, num_classes, padding=config.padding, **kwargs
    )


def prepare(config: TrainConfig, x):
    """A batch of NHWC images in the model's layout and dtype."""
    x = x.astype(model_dtype(config))
    if config.model == "mlp":
        return x.reshape(x.shape[0], -1)
    return jnp.transpose(x, (0, 3, 1, 2))  # the convnet is channel-first


def make_solvers(config: TrainConfig):
    """`(rule_solver, eval_solver)`. The default ("auto") is Anderson
    acceleration to rtol = atol = 1e-4 (a distance to the equilibrium): as
    training proceeds, plain fixed-point iteration needs more steps than
    `solver_max_steps` for some examples of a batch (steps would be skipped),
    Anderson acceleration does not; ContinuousHEP runs the dynamics in time and
    therefore takes the ODE solver."""
    tol, steps = config.solver_tol, config.solver_max_steps
    fixed = FixedPointIteration(
        step_size=config.solver_step_size, rtol=tol, atol=tol, max_steps=steps
    )
    named = {
        "fixed-point": fixed,
        "anderson": AndersonAcceleration(rtol=tol, atol=tol, max_steps=steps),
        "root-find": RootFind(rtol=tol, atol=tol, max_steps=steps),
        "ode": SteadyStateODE(rtol=tol, atol=tol, max_steps=max(steps, 4096)),
    }
    if config.solver == "auto":
        anderson = named["anderson"]
        rule_solver = SteadyStateODE() if config.rule == "continuous" else anderson
        return rule_solver, anderson
    if config.rule == "continuous" and config.solver != "ode":
        raise ValueError(
            "TrainConfig(rule='continuous') integrates the dynamics in time and "
            f"needs solver='ode' or 'auto', got solver={config.solver!r}."
        )
    return named[config.solver], named[config.solver]


def schedule_factor(config: TrainConfig, total_steps: int):
    """The learning-rate multiplier as a function of the step count."""
    if config.schedule == "constant":
        return optax.constant_schedule(1.0)
    return optax.cosine_decay_schedule(
        1.0, max(total_steps, 1), alpha=config.min_learning_rate_ratio
    )


def make_optimizer(config: TrainConfig, total_steps: int):
    """SGD with momentum (PyTorch's convention: the weight decay is added to the
    gradient, the momentum buffer is `m·buf + g`) or Adam, scaled by the schedule.
    The per-layer learning rates multiply the result (`layer_scales`)."""
    if config.rule == "online" and (
        config.schedule != "constant"
        or config.layer_learning_rates is not None
        or config.weight_decay > 0
    ):
        raise ValueError(
            "TrainConfig(rule='online') learns inside the ODE at one constant rate: "
            "use schedule='constant', layer_learning_rates=None, weight_decay=0."
        )
    factor = schedule_factor(config, total_steps)
    parts = []
    if config.weight_decay > 0:
        parts.append(optax.add_decayed_weights(config.weight_decay))
    if config.optimizer == "adam":
        parts.append(optax.scale_by_adam())
    elif config.momentum > 0:
        parts.append(optax.trace(decay=config.momentum))
    parts.append(optax.scale_by_schedule(lambda t: -factor(t)))
    return optax.chain(*parts)


def _layer_of(path, num_layers: int) -> int:
    """Layer index of a parameter: entry `l` of a list field (weights, kernels,
    biases); the convnet's readout is the last layer."""
    names = [getattr(k, "name", None) for k in path]
    if any(n in ("readout_weight", "readout_bias") for n in names):
        return num_layers - 1
    for k in path:
        if isinstance(k, jtu.SequenceKey):
            return k.idx
    raise ValueError(f"Cannot tell the layer of parameter {jtu.keystr(path)}.")


def layer_scales(config: TrainConfig, model):
    """Per-parameter learning rates, a PyTree shaped like the parameters."""
    params = eqx.filter(model, eqx.is_inexact_array)
    rates = config.layer_learning_rates
    if rates is None:
        return jtu.tree_map(
            lambda p: jnp.asarray(config.learning_rate, p.dtype), params
        )
    num_layers = len(model.weights) if config.model == "mlp" else len(model.kernels) + 1
    if len(rates) != num_layers:
        raise ValueError(
            f"TrainConfig(layer_learning_rates={rates}) needs one rate per layer: "
            f"this {config.model} has {num_layers} (the readout last)."
        )
    return jtu.tree_map_with_path(
        lambda path, p: jnp.asarray(rates[_layer_of(path, num_layers)], p.dtype),
        params,
    )


def top_k(num_classes: int) -> int:
    return min(5, num_classes)


def steps_per_epoch(config: TrainConfig, batches: int) -> int:
    cap = config.steps_per_epoch
    return batches if cap is None else min(batches, cap)
