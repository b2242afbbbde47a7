"""A batch of fixed-point iterations in one loop.

`jax.vmap` of a solver's `while_loop` runs every example until the slowest stops,
and after each step selects, for every piece of the loop's state, between the new
and the old value according to each example's own stopping flag. For Anderson
mixing that state is mostly its history of differences (`memory − 1` vectors of
the state's size, twice), so the selection alone reads and writes the whole
history at every step: on CPU, where a step of a small network is bound by memory
traffic, that costs more than the network's field. Here the loop is written for
the batch: an example that has stopped keeps its iterate, step count and result,
and nothing else is selected (its loop state is never read again). Once all but
`⌈batch/8⌉` examples have stopped, those go on alone (gathered, with their loop
states), so that a few slow examples do not hold the whole batch. The iterates,
stopping decisions and step counts are those of the per-example loop
(`optx.fixed_point` with the same solver), as the tests check. The loop is not
differentiable in reverse mode: gradients through iterations go through
`solve` (`differentiable=True`).
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx
from jaxtyping import Array, PyTree

from .._solution import Equilibrium
from .base import (
    AbstractEquilibriumSolver,
    finish,
    merge,
    optimistix_solve,
    promote,
    split,
    SplitField,
)


# The last `⌈batch/_CHUNKS⌉` examples of a batch to stop go on alone.
_CHUNKS = 8


def fixed_point_batch(
    loop: optx.AbstractFixedPointSolver,
    step_size: float,
    field_of: Callable[[PyTree], Callable],
    u0: PyTree[Array],
    args: PyTree[Array],
    *,
    split_complex: bool,
    max_steps: int,
) -> Equilibrium:
    """Fixed points of `u ↦ u + step_size · f_b(u)` for each example `b` of a
    batch (leading axis of `u0` and `args`; `f_b = field_of(args[b])`), all in one
    `lax.while_loop` that stops when every example has (`loop.terminate`, a
    non-finite iterate, or `max_steps`)."""

    # The loop iterates real pairs `(Re u, Im u)` if asked to split complex states.
    splitting = split_complex and any(jnp.iscomplexobj(v) for v in jtu.tree_leaves(u0))
    to_state = merge if splitting else (lambda y: y)

    def field(a):
        return SplitField(field_of(a)) if splitting else field_of(a)

    def update(y, a):
        return jtu.tree_map(lambda p, q: p + step_size * q, y, field(a)(y)), None

    y0 = split(u0) if splitting else u0
    state0 = jax.vmap(lambda y: loop.init(None, y, None, None, None, None, None))(y0)
    batch = jtu.tree_leaves(y0)[0].shape[0]
    no = jnp.zeros((batch,), bool)

    def step_one(y, state, a):
        new_y, new_state, _ = loop.step(update, y, a, {}, state, frozenset())
        stop, result = loop.terminate(update, new_y, a, {}, new_state, frozenset())
        leaves = jtu.tree_leaves(new_y)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in leaves]))
        result = optx.RESULTS.where(finite, result, optx.RESULTS.nonfinite)
        return new_y, new_state, stop | ~finite, result

    def run(carry, args, enough):
        """Step every example of `carry` until `enough(done)` or `max_steps`."""

        def cond(carry):
            k, _, _, done, _, _ = carry
            return (k < max_steps) & ~enough(done)

        def body(carry):
            k, y, state, done, steps, result = carry
            new_y, new_state, stop, new_result = jax.vmap(step_one)(y, state, args)

            def keep(old, new):
                return jnp.where(batch_mask(done, old), old, new)

            # A stopped example keeps its iterate, step count and result; its loop
            # state is never read again, so it is left to change.
            y = jtu.tree_map(keep, y, new_y)
            result = jax.vmap(optx.RESULTS.where)(done, result, new_result)
            steps = jnp.where(done, steps, steps + 1)
            return k + 1, y, new_state, done | stop, steps, result

        return jax.lax.while_loop(cond, body, carry)

    # The whole batch runs while more than a chunk of `⌈batch/_CHUNKS⌉` examples are
    # still going; those that are then go on alone, as one chunk (with their loop
    # states: the same iterates as if the batch had gone on), so that a few slow
    # examples do not hold the whole batch for their steps.
    chunk = -(-batch // _CHUNKS)
    init = (
        jnp.zeros((), jnp.int32),
        y0,
        state0,
        no,
        jnp.zeros((batch,), jnp.int32),
        jax.vmap(lambda _: optx.RESULTS.successful)(no),
    )
    everyone = lambda done: jnp.all(done)  # noqa: E731
    if chunk >= batch:  # a batch of one
        _, *rest = run(init, args, everyone)
    else:
        k, *rest = run(init, args, lambda done: jnp.sum(~done) <= chunk)
        slow = jnp.argsort(rest[2], stable=True)[:chunk]  # the unfinished first
        take = lambda tree: jtu.tree_map(lambda a: a[slow], tree)  # noqa: E731
        _, *last = run((k, *take(rest)), take(args), everyone)
        rest = jtu.tree_map(lambda a, b: a.at[slow].set(b), rest, last)
    y, _, done, steps, result = rest
    result = jax.vmap(
        lambda d, r: optx.RESULTS.where(d, r, optx.RESULTS.nonlinear_max_steps_reached)
    )(done, result)

    def package(a, y_b, steps_b, result_b):
        return finish(field_of(a), to_state(y_b), steps_b, promote(result_b))

    return jax.vmap(package)(args, y, steps, result)


def batch_mask(mask, a):
    """`mask` (batch,) broadcast against `a` (batch, ...)."""
    return mask.reshape(mask.shape + (1,) * (a.ndim - 1))


class AbstractIteratedMap(AbstractEquilibriumSolver):
    """A solver that iterates the map `u ↦ u + step_size · f(u)` with an Optimistix
    fixed-point loop (`_loop`): per example through `optx.fixed_point`, and a
    batch in one loop of its own (`fixed_point_batch`)."""

    step_size: eqx.AbstractVar[float]
    split_complex: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def _loop(self, u0: PyTree[Array]) -> optx.AbstractFixedPointSolver:
        """The fixed-point loop at the tolerances for `u0`'s dtype."""

    def solve(self, vector_field, u0, *, differentiable):
        def update(u, f):
            return jtu.tree_map(lambda a, b: a + self.step_size * b, u, f(u))

        return optimistix_solve(
            optx.fixed_point,
            update,
            self._loop(u0),
            vector_field,
            u0,
            split_complex=self.split_complex,
            max_steps=self.max_steps,
            differentiable=differentiable,
        )

    def solve_many(self, field_of, u0, args, *, differentiable):
        """One loop for the whole batch, unless gradients must flow through the
        iterations (then `vmap` of `solve`)."""
        if differentiable:
            return super().solve_many(field_of, u0, args, differentiable=True)
        return fixed_point_batch(
            self._loop(u0),
            self.step_size,
            field_of,
            u0,
            args,
            split_complex=self.split_complex,
            max_steps=self.max_steps,
        )
