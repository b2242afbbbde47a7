"""Equilibria of a batch: at one β, at several β (points of a circle), and the
free equilibria checked for stability. Every learning rule and diagnostic solves
through these functions; a new rule is built on them (see the documentation's
"Extending holoode")."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, PyTree

from .._costs import AbstractCost
from .._misc import real_dtype, tree_astype, tree_dtype, tree_norm, tree_vdot
from .._model import AbstractEquilibriumModel, parameters
from .._solution import Equilibrium, RESULTS
from .base import AbstractEquilibriumSolver
from .batch_loop import batch_mask
from .ode import SteadyStateODE
from .stable import unstable_direction


def initial_states(model: AbstractEquilibriumModel, x: Array, dtype=None) -> PyTree:
    """The model's `init_state` for each example of a batch (leading axis of `x`),
    cast to `dtype` (default: the real dtype of the model's parameters)."""
    if dtype is None:
        dtype = real_dtype(tree_dtype(parameters(model)[0]))
    return tree_astype(jax.vmap(model.init_state)(x), dtype)


def solve_batch(
    solver: AbstractEquilibriumSolver,
    model: AbstractEquilibriumModel,
    x: Array,
    y: Array,
    cost: AbstractCost,
    beta: ArrayLike,
    u0: PyTree,
    *,
    differentiable: bool = False,
) -> Equilibrium:
    """Equilibria of a batch (leading axis of `x`, `y`, `u0`) at `beta` (real or
    complex; one for all, or one per example), each solved by `solver` from its
    own `u0`, all in one batch solve (`solver.solve_many`).

    `differentiable=True` lets reverse-mode gradients flow through the solver's
    iterations (backpropagation through time); otherwise the caller stops
    gradients (the batch loops of `AndersonAcceleration` and
    `FixedPointIteration` cannot be differentiated in reverse mode). The result's
    fields carry the batch axis; nothing is raised: read `result` (a
    `holoode.RESULTS` per example)."""

    betas = jnp.broadcast_to(jnp.asarray(beta), x.shape[:1])
    return _solve_examples(solver, model, x, y, cost, betas, u0, differentiable)


def _solve_examples(solver, model, x, y, cost, betas, u0, differentiable=False):
    """Equilibria of examples `(x, y, β)` (leading axes), one solve of the batch
    (`solver.solve_many`)."""

    def field_of(args):
        x_b, y_b, beta_b = args
        return eqx.Partial(model.vector_field, x=x_b, y=y_b, beta=beta_b, cost=cost)

    return solver.solve_many(field_of, u0, (x, y, betas), differentiable=differentiable)


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
    example needs it; the dynamics between the two run on the examples that need
    them only (`solve_rows`), so that a few slow images do not cost the whole
    batch's time. Under a `vmap` of the whole call the loop and the branch
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
        # refines. They run on the examples that need them only.
        ode = SteadyStateODE(rtol=1e-5, atol=1e-5)
        value, steps = solve_rows(ode, model, x, y, cost, starts, unstable | stalled)
        return eqx.tree_at(lambda s: (s.value, s.num_steps), sol, (value, steps))

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
            lambda a, b: jnp.where(batch_mask(keep, a), a, b).astype(b.dtype), new, sol
        )
        unstable = jnp.where(redo, new_unstable | lost, unstable)
        # Any finite failure (out of steps, a stalled Anderson, a singular Newton
        # step) is handed to the dynamics.
        failed = (new.result != RESULTS.successful) & (new.result != RESULTS.nonfinite)
        stalled = (passes == 0) & failed
        stalled = stalled & (not follows_dynamics)
        return passes + 1, merged, unstable, stalled, like(new_direction, direction)

    # The loop's first carry, written out rather than found by `eval_shape` of
    # the body (which would trace the solver and the check a second time).
    batch = x.shape[0]
    none = jnp.zeros((batch,), bool)
    blank = Equilibrium(
        value=u0,
        num_steps=jnp.zeros((batch,), jnp.int32),
        residual=jnp.zeros((batch,), real_dtype(tree_dtype(u0))),
        result=jax.vmap(lambda _: RESULTS.successful)(none),
    )
    direction = jtu.tree_map(jnp.zeros_like, u0)
    _, sol, unstable, _, _ = jax.lax.while_loop(
        again,
        body,
        (jnp.zeros((), jnp.int32), blank, none, none, direction),
    )

    def mark(bad, result):
        return RESULTS.where(bad, RESULTS.unstable_equilibrium, result)

    return eqx.tree_at(lambda s: s.result, sol, jax.vmap(mark)(unstable, sol.result))


def solve_rows(
    solver: AbstractEquilibriumSolver,
    model: AbstractEquilibriumModel,
    x: Array,
    y: Array,
    cost: AbstractCost,
    u0: PyTree,
    rows: Array,
) -> tuple[PyTree, Array]:
    """Free equilibria of the examples where the boolean `rows` (batch,) is true:
    `(values, num_steps)`, with `u0` and 0 steps in the other rows.

    A `vmap` of a solver's loop runs every example until the slowest converges;
    here the selected examples are gathered into chunks of `⌈batch/8⌉` and the
    chunks are solved one after another (a `lax.while_loop`), so that two slow
    examples in a batch of 20 cost one chunk of 3, not a batch of 20. The solver
    is traced once, at the chunk's shape."""
    batch = x.shape[0]
    size = -(-batch // 8)
    count = jnp.sum(rows)
    # Selected examples first; padded to whole chunks by repeating the order
    # (the padding is solved but not written back).
    order = jnp.argsort(~rows, stable=True)
    order = jnp.concatenate([order, order[: (-batch) % size]])
    steps0 = jnp.zeros((batch,), jnp.int32)

    def more(carry):
        start, _, _ = carry
        return start < count

    def chunk(carry):
        start, values, steps = carry
        idx = jax.lax.dynamic_slice_in_dim(order, start, size)
        keep = start + jnp.arange(size) < count
        take = lambda a: a[idx]  # noqa: E731
        sol = solve_batch(
            solver, model, take(x), take(y), cost, 0.0, jtu.tree_map(take, u0)
        )

        def put(a, b):
            return a.at[idx].set(
                jnp.where(batch_mask(keep, b), b.astype(a.dtype), a[idx])
            )

        values = jtu.tree_map(put, values, sol.value)
        return start + size, values, put(steps, sol.num_steps)

    _, values, steps = jax.lax.while_loop(
        more, chunk, (jnp.zeros((), order.dtype), u0, steps0)
    )
    return values, steps


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
    """Equilibria at several `betas`, shaped `(batch, points, ...)`: `betas` shaped
    `(points,)` are the same points for every example, `(batch, points)` each
    example's own.

    If `chain` is `False` every point starts from `u0` and all points are solved in
    one batch solve; if `True` they are solved one after another (`lax.scan`), each
    starting from the previous one's equilibrium (a warm start along the circle).
    """
    batch, points = x.shape[0], betas.shape[-1]
    betas = jnp.broadcast_to(betas, (batch, points))
    if not chain:
        # Every (example, point) pair is one example of a single batch solve.

        def rows(a):
            return jnp.broadcast_to(a[:, None], (batch, points) + a.shape[1:]).reshape(
                (batch * points,) + a.shape[1:]
            )

        sols = _solve_examples(
            solver,
            model,
            rows(x),
            rows(y),
            cost,
            betas.reshape(-1),
            jtu.tree_map(rows, u0),
        )
        return jtu.tree_map(lambda a: a.reshape((batch, points) + a.shape[1:]), sols)

    def step(u_prev, b):
        sol = solve_batch(solver, model, x, y, cost, b, u_prev)
        return sol.value, sol

    _, sols = jax.lax.scan(step, u0, betas.T)
    return jtu.tree_map(lambda a: jnp.swapaxes(a, 0, 1), sols)
