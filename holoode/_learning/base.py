"""The learning-rule protocol and the machinery the rules share."""

import abc
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._costs import AbstractCost
from .._equilibrium import AbstractEquilibriumSolver, SteadyStateODE
from .._model import AbstractEquilibriumModel, learning_signal, parameters
from .._noise import sample_points
from .._solution import Info


class AbstractLearningRule(eqx.Module):
    """A way of computing the loss gradient of an equilibrium network.

    Every rule has one method, `estimate`, called by `holoode.gradient` with a
    batch (leading axis) of inputs and targets. Rules combine freely with every
    model form and every equilibrium solver.

    To write one, build `estimate` on the public solve layer
    (`holoode.solve_free`, `holoode.solve_points`, `holoode.learning_signal`, ...)
    and return the diagnostics with `holoode.Info.from_equilibria`; the tutorial
    "Extending holoode" writes a complete rule and solver. Store the numbers a
    rule is swept over (β) as array fields, so that a new value is new data for
    the compiled program rather than a recompile.
    """

    def default_solver(self) -> AbstractEquilibriumSolver:
        """The equilibrium solver `holoode.gradient` uses when none is given:
        `holoode.SteadyStateODE()`, the network's own dynamics, which suits
        every model form."""
        return SteadyStateODE()

    def __repr__(self) -> str:
        return describe(self)

    @abc.abstractmethod
    def estimate(
        self,
        model: AbstractEquilibriumModel,
        x: Array,
        y: Array,
        *,
        cost: AbstractCost,
        solver: AbstractEquilibriumSolver,
        key: PRNGKeyArray | None,
    ) -> tuple[PyTree, Info]:
        """Return `(grads, info)`: the gradient of the batch-mean cost at the free
        equilibrium with respect to the model's inexact array leaves (shaped like
        `eqx.filter_grad`'s output), and a `holoode.Info`."""


def real_scalar(name: str, per_example: bool = False):
    """A field converter to a real floating-point scalar array: rules store β
    (and the period) as arrays, so that a sweep over them compiles once. A bad
    value is refused with a message naming the field. With `per_example`, a
    one-dimensional array (one value per example of the batch) is accepted too."""

    def convert(value):
        if per_example and isinstance(value, (np.ndarray, list, tuple)):
            value = jnp.asarray(value, float)
        if isinstance(value, (bool, complex)) or not isinstance(
            value, (int, float, jax.Array)
        ):
            raise ValueError(f"{name} must be a real number, got {value!r}.")
        if isinstance(value, jax.Array) and value.ndim > int(per_example):
            raise ValueError(
                f"{name} must be a scalar{' or one value per example' * per_example}"
                f", got an array shaped {value.shape}."
            )
        if isinstance(value, jax.Array) and not jnp.issubdtype(
            value.dtype, jnp.floating
        ):
            raise ValueError(
                f"{name} must be a real floating-point scalar, got dtype {value.dtype}."
            )
        return jnp.asarray(float(value) if isinstance(value, (int, float)) else value)

    return convert


as_beta = real_scalar("β")
as_radius = real_scalar("β", per_example=True)


def concrete(beta) -> float | None:
    """The value of a scalar β if it is known at trace time, else `None` (also for
    one β per example: see `concrete_values`)."""
    if isinstance(beta, jax.core.Tracer) or jnp.ndim(beta) > 0:
        return None
    return float(beta)


def concrete_values(beta) -> np.ndarray | None:
    """The values of β (any shape) if known at trace time, else `None`."""
    return None if isinstance(beta, jax.core.Tracer) else np.asarray(beta)


def describe(rule) -> str:
    """A readable one-line description of a rule (or any module) with the values of
    its fields: scalar arrays as numbers (`beta=0.1`, not `beta=weak_f64[]`), other
    arrays by shape. As in Equinox's own `repr`, fields at their default value
    are left out (β is always shown)."""
    fields = []
    for field in dataclasses.fields(rule):
        value = getattr(rule, field.name, None)
        default = field.default
        if field.name != "beta" and (
            value is None
            or (
                not isinstance(value, (jax.Array, np.ndarray, np.generic))
                and default is not dataclasses.MISSING
                and type(value) is type(default)
                and value == default
            )
        ):
            continue
        if isinstance(value, (jax.Array, np.ndarray, np.generic)):
            if value.ndim == 0 and concrete(value) is not None:
                digits = 7 if value.dtype == jnp.float32 else 16
                text = f"{float(f'{concrete(value):.{digits}g}')!r}"
                if jnp.issubdtype(value.dtype, jnp.integer):
                    text = str(int(value))
            else:
                text = f"{value.dtype}{list(value.shape)}"
        elif isinstance(value, eqx.Module):
            text = describe(value)
        else:
            text = repr(value)
        fields.append(f"{field.name}={text}")
    return f"{type(rule).__name__}({', '.join(fields)})"


def weighted_signal(
    model: AbstractEquilibriumModel,
    states: PyTree,
    x: Array,
    y: Array,
    cost: AbstractCost,
    betas: Array,
    weights: Array,
) -> PyTree:
    """`Re Σ_k w_mk ∂F/∂θ(u_k, β_k)`, averaged over the batch, for each row `m`
    (`holoode.learning_signal` on the points of every example).

    `states` are shaped `(batch, points, ...)`, `betas` `(points,)` (the same
    points for every example) or `(batch, points)` (each example its own), and
    `weights` `(rows, points)` or `(rows, batch, points)`. Returns a PyTree shaped
    like the model's parameters with a leading `rows` axis, in their dtype.
    """
    batch, points = x.shape[0], betas.shape[-1]
    flat = jtu.tree_map(lambda a: a.reshape((batch * points,) + a.shape[2:]), states)
    xs, ys = (jnp.repeat(a, points, axis=0) for a in (x, jnp.asarray(y)))
    betas = jnp.broadcast_to(betas, (batch, points)).reshape(-1)
    weights = jnp.broadcast_to(weights[:, None] if weights.ndim == 2 else weights,
                               (weights.shape[0], batch, points))  # fmt: skip
    signals = jax.vmap(
        lambda w: learning_signal(
            model, flat, xs, ys, betas, cost, w.reshape(-1) / batch
        )
    )(weights)
    params, _ = parameters(model)
    return jtu.tree_map(lambda s, p: jnp.real(s).astype(p.dtype), signals, params)


def add_noise(noise, model, x, y, cost, betas, states, weights, key):
    """With `noise`, replace equilibria `(batch, points, ...)` by noisy snapshots
    around them and spread each point's weight evenly over its snapshots."""
    if noise is None:
        return states, betas, weights, True
    if key is None:
        raise ValueError(
            "holoode.gradient: this rule has neuron noise, so it needs a PRNG key: "
            "pass `key=jax.random.key(0)` (a fixed key makes results reproducible)."
        )
    states, betas, finite = sample_points(noise, model, x, y, cost, betas, states, key)
    weights = jnp.repeat(weights, noise.samples, axis=-1) / noise.samples
    return states, betas, weights, finite


def free_loss(model, states, x, y, cost) -> Array:
    """Batch-mean cost at the given (free) states."""
    return jnp.mean(
        jnp.real(jax.vmap(lambda u, a, b: model.loss(u, a, b, cost))(states, x, y))
    )
