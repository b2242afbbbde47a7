"""The compiled training and evaluation steps, built once per configuration."""

import dataclasses
import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._costs import CrossEntropy
from .._equilibrium.batched import initial_states, solve_batch
from .._gradient import gradient
from .._learning import HolomorphicEP
from .._misc import tree_isfinite
from .._online import online_plasticity
from .._solution import result_code, RESULTS
from . import _build
from ._config import NOT_IN_STEP, TrainConfig
from ._rules import OnlinePlasticity


class StepResult(NamedTuple):
    """What one training step returns. If `code` (a `RESULTS` index) is not 0,
    `model` and `opt_state` are the ones the step received; `halvings` is how
    often `|β|` was halved (`beta_backoff`)."""

    model: eqx.Module
    opt_state: PyTree
    key: PRNGKeyArray
    loss: Array
    code: Array
    halvings: Array


def _keep_if(ok, new, old):
    """`new` where `ok`, else `old`, leaf by leaf: a skipped step leaves no trace."""
    return jtu.tree_map(
        lambda n, o: jnp.where(ok, n, o) if eqx.is_array(n) else n, new, old
    )


def apply_update(optimizer, grads, opt_state, model, scales):
    """The optimiser's update, times the per-parameter learning rates `scales`."""
    params = eqx.filter(model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    updates = jtu.tree_map(lambda u, s: (u * s).astype(u.dtype), updates, scales)
    return eqx.apply_updates(model, updates), opt_state


class Plan(eqx.Module):
    """The static part of a run: rule, solvers, cost, optimiser and the jitted
    functions. Cached per configuration (minus the seed and the bookkeeping), so
    runs that differ only in seed reuse the compiled step."""

    config: TrainConfig = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    rule_solver: eqx.Module
    eval_solver: eqx.Module
    cost: CrossEntropy
    optimizer: object = eqx.field(static=True)

    def step(self, rule, model, opt_state, scales, x, y, key):
        """One update with `rule`: a `StepResult`."""
        key, sub = jr.split(key)
        x = _build.prepare(self.config, x)
        if isinstance(rule, OnlinePlasticity):
            return self._online_step(rule, model, opt_state, x, y, key)
        grads, info, halvings = self._gradient(rule, model, x, y, sub)
        ok = info.result == RESULTS.successful
        # Zero the gradient of a failed step so that NaNs never reach the optimiser.
        grads = jtu.tree_map(lambda g: jnp.where(ok, g, 0.0), grads)
        new_model, new_state = apply_update(
            self.optimizer, grads, opt_state, model, scales
        )
        model = _keep_if(ok, new_model, model)
        opt_state = _keep_if(ok, new_state, opt_state)
        return StepResult(
            model, opt_state, key, info.loss, result_code(info.result), halvings
        )

    def _gradient(self, rule, model, x, y, key):
        """The rule's gradient; for holomorphic EP with `beta_backoff`, retried
        while the continuation is lost or nudged equilibria are not reached, with
        `|β|` halved for the examples concerned only (each example's term of the
        gradient is exact for its own radius; the others keep theirs). One copy
        of the gradient program, inside a `lax.while_loop`, so the back-off costs
        no compile time. Returns `(grads, info, halvings)`, `halvings` the most
        times any example's `|β|` was halved."""

        def attempt(r):
            return gradient(
                r, model, x, y, cost=self.cost, solver=self.rule_solver, key=key,
                throw=False,
            )  # fmt: skip

        backoff = self.config.beta_backoff
        if not (isinstance(rule, HolomorphicEP) and backoff > 0):
            return (*attempt(rule), jnp.zeros((), jnp.int32))

        def lost(info):
            """Examples to retry on a smaller circle, on a failed step: those whose
            circle left their disc, and, where every free equilibrium was
            reached, those whose nudged equilibria were not (the nudged
            equilibria of a smaller circle are nearer the free one)."""
            circle = info.radius_ratio >= rule.max_radius_ratio
            nudged = ~jnp.all(info.reached[:, 1:], axis=1) & jnp.all(info.reached[:, 0])
            return (circle | nudged) & (info.result != RESULTS.successful)

        def again(carry):
            first, halvings, _, info = carry
            return first | jnp.any(lost(info) & (halvings < backoff))

        def body(carry):
            first, halvings, _, info = carry
            halvings = jnp.where(
                ~first & lost(info) & (halvings < backoff), halvings + 1, halvings
            )
            beta = jnp.broadcast_to(rule.beta, halvings.shape) * 0.5**halvings
            return (
                jnp.asarray(False),
                halvings,
                *attempt(eqx.tree_at(lambda r: r.beta, rule, beta)),
            )

        shapes = jax.eval_shape(lambda: attempt(rule))
        blank = jtu.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        halvings = jnp.zeros(x.shape[:1], jnp.int32)
        _, halvings, grads, info = jax.lax.while_loop(
            again, body, (jnp.asarray(True), halvings, *blank)
        )
        return grads, info, jnp.max(halvings)

    def _online_step(self, rule, model, opt_state, x, y, key):
        free = self._free(model, x, y)
        loss = jnp.mean(jax.vmap(self.cost)(free[0], y))
        new_model, result = online_plasticity(
            model, x, y, cost=self.cost, beta=rule.beta, period=rule.period,
            periods_per_example=rule.periods_per_example,
            learning_rate=rule.learning_rate, throw=False,
        )  # fmt: skip
        finite = tree_isfinite(eqx.filter(new_model, eqx.is_inexact_array))
        solved = result == RESULTS.successful
        code = RESULTS.where(finite, RESULTS.successful, RESULTS.nonfinite_gradient)
        code = RESULTS.where(solved, code, result)
        model = _keep_if(solved & finite, new_model, model)
        no_halvings = jnp.zeros((), jnp.int32)
        return StepResult(model, opt_state, key, loss, result_code(code), no_halvings)

    def _free(self, model, x, y):
        """Logits at the free equilibrium and whether each equilibrium was reached."""
        u0 = initial_states(model, x, x.dtype)
        sol = solve_batch(self.eval_solver, model, x, y, self.cost, 0.0, u0)
        logits = jnp.real(jax.vmap(model.readout)(sol.value, x))
        return logits, sol.result == RESULTS.successful

    def evaluate(self, model, x, y, mask):
        """Masked sums over one batch: loss, top-1 and top-k hits, examples, and
        equilibria not reached."""
        x = _build.prepare(self.config, x)
        logits, reached = self._free(model, x, y)
        w = mask.astype(logits.dtype)
        loss = jax.vmap(self.cost)(logits, y)
        top1 = jnp.argmax(logits, axis=-1) == y
        _, best = jax.lax.top_k(logits, _build.top_k(self.num_classes))
        topk = jnp.any(best == y[:, None], axis=-1)
        return {
            "loss": jnp.sum(w * loss),
            "top1": jnp.sum(w * top1),
            "topk": jnp.sum(w * topk),
            "count": jnp.sum(w),
            "unreached": jnp.sum(w * ~reached),
        }


def plan(config: TrainConfig, num_classes: int, total_steps: int):
    """The `Plan` and its jitted `(step, evaluate)` for this configuration, shared
    (with their compiled code) by every configuration that differs only in what
    the step receives as arrays (β, learning rates, the weights and data) or in
    bookkeeping."""
    cosine = config.schedule == "cosine"
    static = dataclasses.replace(
        config, **NOT_IN_STEP,
        # The schedule's length is compiled into a cosine schedule.
        epochs=config.epochs if cosine else 1,
        steps_per_epoch=config.steps_per_epoch if cosine else None,
    )  # fmt: skip
    return _plan(static, num_classes, total_steps if cosine else 0)


@functools.lru_cache(maxsize=16)
def _plan(static: TrainConfig, num_classes: int, total_steps: int):
    rule_solver, eval_solver = _build.make_solvers(static)
    p = Plan(
        config=static,
        num_classes=num_classes,
        rule_solver=rule_solver,
        eval_solver=eval_solver,
        cost=CrossEntropy(),
        optimizer=_build.make_optimizer(static, total_steps),
    )
    step = eqx.filter_jit(lambda p, *args: p.step(*args), donate="none")
    evaluate = eqx.filter_jit(lambda p, *args: p.evaluate(*args))
    return p, functools.partial(step, p), functools.partial(evaluate, p)
