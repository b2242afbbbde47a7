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
from .._equilibrium.stable import unstable_direction
from .._misc import tree_astype, tree_dtype, tree_isfinite, tree_norm, tree_vdot
from .._model import AbstractEquilibriumModel, holomorphic_grad
from .._solution import Equilibrium, Info, RESULTS


class AbstractLearningRule(eqx.Module):
    """A way of computing the loss gradient of an equilibrium network.

    Every rule has one method, `estimate`, called by `holoode.gradient` with a
    batch (leading axis) of inputs and targets. Rules combine freely with every
    model form and every equilibrium solver.
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


def real_scalar(name: str):
    """A field converter to a real floating-point scalar array: rules store β
    (and the period) as arrays, so that a sweep over them compiles once. A bad
    value is refused with a message naming the field."""

    def convert(value):
        if isinstance(value, (bool, complex)) or not isinstance(
            value, (int, float, jax.Array)
        ):
            raise ValueError(f"{name} must be a real number, got {value!r}.")
        if isinstance(value, jax.Array) and not jnp.issubdtype(
            value.dtype, jnp.floating
        ):
            raise ValueError(
                f"{name} must be a real floating-point scalar, got dtype {value.dtype}."
            )
        return jnp.asarray(float(value) if isinstance(value, (int, float)) else value)

    return convert


as_beta = real_scalar("β")


def concrete(beta) -> float | None:
    """The value of β if it is known at trace time, else `None`."""
    return None if isinstance(beta, jax.core.Tracer) else float(beta)


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


def parameters(model) -> tuple[PyTree, PyTree]:
    """Split a model into its inexact array leaves and the rest."""
    return eqx.partition(model, eqx.is_inexact_array)


def initial_states(model, x: Array, dtype) -> PyTree:
    """The model's initial state for each example, cast to `dtype`."""
    return tree_astype(jax.vmap(model.init_state)(x), dtype)


def solve_batch(
    solver: AbstractEquilibriumSolver,
    model: AbstractEquilibriumModel,
    x: Array,
    y: Array,
    cost: AbstractCost,
    beta,
    u0: PyTree,
    *,
    differentiable: bool = False,
) -> Equilibrium:
    """Equilibria of a batch (leading axis of `x`, `y`, `u0`) at one `beta`."""

    def one(x_b, y_b, u0_b):
        field = eqx.Partial(model.vector_field, x=x_b, y=y_b, beta=beta, cost=cost)
        return solver.solve(field, u0_b, differentiable=differentiable)

    return jax.vmap(one)(x, y, u0)


def solve_free(
    solver: AbstractEquilibriumSolver,
    model: AbstractEquilibriumModel,
    x: Array,
    y: Array,
    cost: AbstractCost,
    u0: PyTree,
) -> Equilibrium:
    """Free equilibria (β = 0) of a batch, each a *stable* equilibrium.

    Root finders and Anderson acceleration converge to any zero of the vector
    field, and can stall; on real data (the paper's MNIST network, see
    `benchmarks/saddles.py`) Anderson settles on a saddle the network's dynamics
    would leave for some images, and stalls for others. Each solution is checked
    (`holoode._equilibrium.stable`). Where one is proved unstable, the dynamics
    (`SteadyStateODE`) are run from it, pushed a little along its unstable
    direction (the side facing the initial state); where the solver stopped at
    `max_steps`, they are run from the initial state. The state they reach is
    refined by `solver`. A state still unstable after that, or a saddle the
    dynamics could not leave for a stable state (they diverge where the energy
    is unbounded below), gets `RESULTS.unstable_equilibrium`; a stalled solve
    that still does not converge keeps its code. When `solver` is itself a
    `SteadyStateODE`, it restarts from the pushed saddles directly, and a solve
    stopped at `max_steps` keeps its code.

    The solve and the check are one compiled body run in a `lax.while_loop`:
    once from `u0`, and a second time, on the whole batch, only when some
    example needs it. Under a `vmap` of the whole call the loop and the branch
    become selects, so both passes, and the dynamics in each, always run: call
    it on a batch rather than `vmap` it. `num_steps` counts the steps of all
    solves.
    """
    follows_dynamics = isinstance(solver, SteadyStateODE)

    def solve_and_check(start):
        sol = solve_batch(solver, model, x, y, cost, 0.0, start)
        unstable, direction = jax.vmap(
            lambda u, x_b: unstable_direction(model, u, x_b)
        )(sol.value, x)
        return sol, unstable & (sol.result == RESULTS.successful), direction

    def escape(sol, unstable, stalled, direction):
        """Where the dynamics start: a saddle pushed 1% along its unstable
        direction, on the side facing the initial state; a stalled solve's
        initial state; the solution itself elsewhere."""

        def one(u, d, u_init, bad, stuck):
            scale = 0.01 * jnp.maximum(tree_norm(u), 1.0)
            side = jnp.sign(tree_vdot(d, jtu.tree_map(jnp.subtract, u_init, u)))
            side = jnp.where(side == 0, 1.0, side)
            return jtu.tree_map(
                lambda a, b, c: jnp.where(
                    stuck, c, jnp.where(bad, a + side * scale * b, a)
                ),
                u,
                d,
                u_init,
            )

        starts = jax.vmap(one)(sol.value, direction, u0, unstable, stalled)
        if follows_dynamics:
            no_steps = jnp.zeros_like(sol.num_steps)
            return eqx.tree_at(
                lambda s: (s.value, s.num_steps), sol, (starts, no_steps)
            )
        # The dynamics only have to reach the stable state's basin: `solver`
        # refines.
        ode = SteadyStateODE(rtol=1e-5, atol=1e-5)
        return solve_batch(ode, model, x, y, cost, 0.0, starts)

    def like(tree, reference):
        return jtu.tree_map(lambda a, b: a.astype(b.dtype), tree, reference)

    # Two passes of one compiled body (the solver and the check are compiled
    # once): the solve from `u0`, then, only if some example needs it, the solve
    # from where the dynamics lead.
    def again(carry):
        passes, _, unstable, stalled, _ = carry
        return (passes == 0) | ((passes == 1) & jnp.any(unstable | stalled))

    def body(carry):
        passes, sol, unstable, stalled, direction = carry
        relaxed = jax.lax.cond(
            passes == 0,
            lambda: eqx.tree_at(lambda s: s.value, sol, like(u0, sol.value)),
            lambda: like(escape(sol, unstable, stalled, direction), sol),
        )
        new, new_unstable, new_direction = solve_and_check(relaxed.value)
        redo = (passes == 0) | unstable | stalled
        # A saddle the dynamics could not leave for a stable state keeps its
        # (finite) state, marked unstable below.
        lost = unstable & (new.result != RESULTS.successful)
        steps = jnp.where(passes == 0, 0, sol.num_steps + relaxed.num_steps)
        new = eqx.tree_at(lambda s: s.num_steps, new, steps + new.num_steps)
        keep = redo & ~lost
        merged = jtu.tree_map(
            lambda a, b: jnp.where(_rows(keep, a), a, b).astype(b.dtype), new, sol
        )
        unstable = jnp.where(redo, new_unstable | lost, unstable)
        stalled = (passes == 0) & (new.result == RESULTS.max_steps_reached)
        stalled = stalled & (not follows_dynamics)
        return passes + 1, merged, unstable, stalled, new_direction

    blank = jax.eval_shape(lambda: solve_and_check(u0))
    blank = jtu.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), blank)
    sol, unstable, direction = blank
    _, sol, unstable, _, _ = jax.lax.while_loop(
        again,
        body,
        (jnp.zeros((), jnp.int32), sol, unstable, unstable, direction),
    )

    def mark(bad, result):
        return RESULTS.where(bad, RESULTS.unstable_equilibrium, result)

    return eqx.tree_at(lambda s: s.result, sol, jax.vmap(mark)(unstable, sol.result))


def _rows(mask, a):
    """`mask` (batch,) broadcast against `a` (batch, ...)."""
    return mask.reshape(mask.shape + (1,) * (a.ndim - 1))


def solve_points(
    solver: AbstractEquilibriumSolver,
    model: AbstractEquilibriumModel,
    x: Array,
    y: Array,
    cost: AbstractCost,
    betas: Array,
    u0: PyTree,
    *,
    chain: bool,
) -> Equilibrium:
    """Equilibria at several `betas`, shaped `(batch, points, ...)`.

    If `chain` is `False` every point starts from `u0` and all points are solved in
    one `vmap`; if `True` they are solved one after another (`lax.scan`), each
    starting from the previous one's equilibrium (a warm start along the circle).
    """
    if not chain:
        sols = jax.vmap(
            lambda b: solve_batch(solver, model, x, y, cost, b, u0), out_axes=1
        )(betas)
        return sols

    def step(u_prev, b):
        sol = solve_batch(solver, model, x, y, cost, b, u_prev)
        return sol.value, sol

    _, sols = jax.lax.scan(step, u0, betas)
    return jtu.tree_map(lambda a: jnp.swapaxes(a, 0, 1), sols)


def weighted_signal(
    model: AbstractEquilibriumModel,
    states: PyTree,
    x: Array,
    y: Array,
    cost: AbstractCost,
    betas: Array,
    weights: Array,
) -> PyTree:
    """`Re Σ_k w_mk ∂F/∂θ(u_k, β_k)`, averaged over the batch, for each row `m`.

    `states` are shaped `(batch, points, ...)`, `betas` `(points,)` and `weights`
    `(rows, points)`. The derivative is the holomorphic one: the parameters are
    cast to the states' dtype before differentiating, so complex states give the
    complex learning signal whose weighted sum is real for real parameters. Returns
    a PyTree shaped like the model's parameters with a leading `rows` axis.
    """
    params, static = parameters(model)
    dtype = jnp.result_type(tree_dtype(states), betas.dtype, weights.dtype)

    def batch_energy(p, w):
        m = eqx.combine(p, static)

        def per_example(u, x_b, y_b):
            energies = jax.vmap(
                lambda u_k, b_k: m.parameter_energy(u_k, x_b, y_b, b_k, cost)
            )(u, betas)
            return jnp.sum(w * energies)

        return jnp.mean(jax.vmap(per_example)(states, x, y))

    params_c = tree_astype(params, dtype)
    signals = jax.vmap(
        lambda w: holomorphic_grad(lambda p: batch_energy(p, w), params_c)
    )(weights)
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
    from .._noise import sample_points

    states, betas, finite = sample_points(noise, model, x, y, cost, betas, states, key)
    weights = jnp.repeat(weights, noise.samples, axis=1) / noise.samples
    return states, betas, weights, finite


def free_loss(model, states, x, y, cost) -> Array:
    """Batch-mean cost at the given (free) states."""
    return jnp.mean(
        jnp.real(jax.vmap(lambda u, a, b: model.loss(u, a, b, cost))(states, x, y))
    )


def overall_result(
    sols: list[Equilibrium],
    grads: PyTree,
    continuation_ok=True,
    noise_finite=True,
    circle_lost=False,
) -> RESULTS:
    """Combine per-solve result codes and gradient checks into one code."""
    finite = tree_isfinite(grads)
    any_nonfinite = jnp.any(
        jnp.array([jnp.any(s.result == RESULTS.nonfinite) for s in sols])
    )
    any_max_steps = jnp.any(
        jnp.array([jnp.any(s.result == RESULTS.max_steps_reached) for s in sols])
    )
    out = RESULTS.where(finite, RESULTS.successful, RESULTS.nonfinite_gradient)
    out = RESULTS.where(continuation_ok, out, RESULTS.continuation_lost)
    any_unstable = jnp.any(
        jnp.array([jnp.any(s.result == RESULTS.unstable_equilibrium) for s in sols])
    )
    out = RESULTS.where(any_max_steps, RESULTS.max_steps_reached, out)
    any_nonfinite = any_nonfinite | ~jnp.all(noise_finite)
    out = RESULTS.where(any_nonfinite, RESULTS.nonfinite, out)
    # A circle measured to lie beyond the analytic disc explains every other
    # failure (solves that wander off, diverge or never settle): say so, with the
    # advice about β, rather than suggest more solver steps.
    out = RESULTS.where(circle_lost, RESULTS.continuation_lost, out)
    # An unstable free state makes everything computed from it meaningless.
    return RESULTS.where(any_unstable, RESULTS.unstable_equilibrium, out)


def make_info(
    loss,
    sols: list[Equilibrium],
    grads,
    *,
    error_estimate=None,
    radius_ratio=None,
    continuation_ok=True,
    noise_finite=True,
    circle_lost=False,
) -> Info:
    """Assemble `Info` from equilibria shaped `(batch,)` or `(batch, points)`."""

    def cols(a):
        return a[:, None] if a.ndim == 1 else a

    num_steps = jnp.concatenate([cols(s.num_steps) for s in sols], axis=1)
    residual = jnp.concatenate([cols(s.residual) for s in sols], axis=1)
    reached = jnp.concatenate(
        [cols(s.result == RESULTS.successful) for s in sols], axis=1
    )
    batch = num_steps.shape[0]
    nan = jnp.array(jnp.nan)
    return Info(
        loss=jnp.asarray(loss),
        num_steps=num_steps,
        residual=residual,
        reached=reached,
        error_estimate=nan if error_estimate is None else error_estimate,
        radius_ratio=jnp.full((batch,), jnp.nan)
        if radius_ratio is None
        else radius_ratio,
        result=overall_result(sols, grads, continuation_ok, noise_finite, circle_lost),
    )
