"""`holoode.gradient`: the one entry point to every learning rule."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import ArrayLike, PRNGKeyArray, PyTree

from ._costs import AbstractCost
from ._equilibrium import AbstractEquilibriumSolver, RootFind
from ._learning import AbstractLearningRule, ContinuousHEP, HolomorphicEP
from ._learning.base import describe
from ._misc import real_dtype, tree_dtype, tree_isfinite
from ._model import (
    AbstractEnergyModel,
    AbstractEquilibriumModel,
    AbstractPrimitiveModel,
    parameters,
)
from ._solution import Info, result_code, RESULT_NAMES, RESULTS, SOLVER_FAILURES


def _check_arguments(rule, model, x, y, cost, solver):
    """Static checks at trace time, so mistakes surface before any solve."""
    if not isinstance(rule, AbstractLearningRule):
        raise ValueError(
            "holoode.gradient: `rule` must be a learning rule such as "
            "`holoode.HolomorphicEP(beta=0.1, num_points=4)`, got "
            f"{type(rule).__name__}."
        )
    if not isinstance(model, AbstractEquilibriumModel):
        raise ValueError(
            "holoode.gradient: `model` must subclass `holoode.AbstractEnergyModel` or "
            f"`holoode.AbstractPrimitiveModel`, got {type(model).__name__}."
        )
    if not isinstance(cost, AbstractCost):
        raise ValueError(
            "holoode.gradient: `cost` must be a holoode cost such as "
            f"`holoode.CrossEntropy()`, got {cost!r}."
        )
    if solver is not None and not isinstance(solver, AbstractEquilibriumSolver):
        raise ValueError(
            "holoode.gradient: `solver` must be an equilibrium solver such as "
            f"`holoode.SteadyStateODE()` or `holoode.RootFind()`, got {solver!r}."
        )
    params = eqx.filter(model, eqx.is_inexact_array)
    leaves = jtu.tree_leaves(params)
    if not leaves:
        raise ValueError(
            "holoode.gradient: `model` has no inexact array leaves to train."
        )
    if any(jnp.iscomplexobj(p) for p in leaves):
        raise ValueError(
            "holoode.gradient: `model` has complex parameters; holoode's rules use "
            "the conjugate symmetry of real parameters. Store real and imaginary "
            "parts as separate real arrays."
        )
    x = jnp.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim < 1:
        raise ValueError(
            "holoode.gradient: `x` needs a leading batch axis, got a scalar. For one "
            "example use `x[None]`."
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"holoode.gradient: the batch is empty (`x` has shape {x.shape}); the "
            "batch-mean gradient needs at least one example."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            "holoode.gradient: `x` must be a real floating-point array, got dtype "
            f"{x.dtype}."
        )
    pdtype = real_dtype(tree_dtype(params))
    if x.dtype != pdtype:
        raise ValueError(
            f"holoode.gradient: `x` has dtype {x.dtype} but the model's parameters are "
            f"{pdtype}; cast one to match, e.g. `x.astype(jnp.{pdtype})`."
        )
    y = jnp.asarray(y)
    if y.ndim < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            "holoode.gradient: `y` needs the same leading batch axis as `x`: "
            f"x has shape {x.shape}, y has shape {y.shape}."
        )
    _check_finite(model, x)
    x0 = jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    y0 = jax.ShapeDtypeStruct(y.shape[1:], y.dtype)
    try:
        state = jax.eval_shape(model.init_state, x0)
        prediction = jax.eval_shape(model.readout, state, x0)
    except Exception as e:  # the model's own error is the most useful message
        raise ValueError(
            f"holoode.gradient: `x` with per-example shape {x.shape[1:]} does not fit "
            f"the model: {e}"
        ) from e
    y_check = y if _is_concrete(y) else jax.ShapeDtypeStruct(y.shape, y.dtype)
    try:
        cost.check_target(prediction.shape, y_check)
    except ValueError as e:
        raise ValueError(f"holoode.gradient: `y` does not fit the cost: {e}") from None
    _check_scalars(model, state, x0, y0, cost)
    return x, y


def _is_concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def _check_finite(model, x) -> None:
    """NaN or inf in the inputs or the parameters would surface later as diverging
    dynamics; name them now (for concrete values; traced ones are flagged by
    `RESULTS.invalid_input`)."""
    # NumPy: no compilation for a check on every call with concrete arrays.
    if _is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        bad = np.argwhere(~np.isfinite(np.asarray(x)))
        where = ", ".join(map(str, bad[0]))
        raise ValueError(
            f"holoode.gradient: `x` contains NaN or inf (at x[{where}]; {len(bad)} of "
            f"{x.size} entries). Fix: clean the inputs, e.g. drop those examples."
        )
    params = eqx.filter(model, eqx.is_inexact_array)
    for path, leaf in jtu.tree_flatten_with_path(params)[0]:
        if _is_concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
            count = int(np.sum(~np.isfinite(np.asarray(leaf))))
            raise ValueError(
                f"holoode.gradient: the parameter model{jtu.keystr(path)} contains NaN "
                f"or inf ({count} of {leaf.size} entries). Fix: restore the model from "
                "a checkpoint or re-initialise it; lower the learning rate if training "
                "diverged."
            )


def _check_scalars(model, state, x0, y0, cost) -> None:
    """Energies, primitives and costs must be scalars: a `(1,)`-shaped energy would
    otherwise be differentiated as the sum of its entries and give a wrong
    learning signal without any error."""
    name = type(model).__name__
    functions = []
    if isinstance(model, AbstractEnergyModel):
        functions.append(("energy(u, x)", lambda u, x, y: model.energy(u, x)))
    if isinstance(model, AbstractPrimitiveModel):
        functions.append(("primitive(u, x)", lambda u, x, y: model.primitive(u, x)))
    functions.append(
        ("cost(readout(u, x), y)", lambda u, x, y: model.loss(u, x, y, cost))
    )
    functions.append(
        (
            "parameter_energy(u, x, y, beta, cost)",
            lambda u, x, y: model.parameter_energy(u, x, y, 0.0, cost),
        )
    )
    shapes = jtu.tree_map(lambda s: s.shape, state)
    for label, fn in functions:
        try:
            out = jax.eval_shape(fn, state, x0, y0)
        except Exception as e:
            raise ValueError(
                f"holoode.gradient: {name}.{label} fails for `x` with per-example "
                f"shape {x0.shape} and the state of shape {shapes}: "
                f"{type(e).__name__}: {str(e).rstrip('.')}. Fix: give `x` the feature "
                f"shape the model was built for (if `x` is right, fix {label})."
            ) from e
        if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
            got = jtu.tree_map(lambda s: s.shape, out)
            raise ValueError(
                f"holoode.gradient: {name}.{label} must return a scalar, got shape "
                f"{got} (for `x` with per-example shape {x0.shape}). A non-scalar "
                "would be differentiated as the sum of its entries and give a wrong "
                "gradient. Fix: return a scalar, e.g. `jnp.sum(...)`, and check the "
                "shape of `x` (no trailing axis of size 1)."
            )


@eqx.filter_jit
def _estimate(rule, model, x, y, cost, solver, key):
    grads, info = rule.estimate(model, x, y, cost=cost, solver=solver, key=key)
    # Values that are only known at run time (inside `jit`): flag them, and make
    # the gradient NaN so that it cannot be used by mistake.
    prediction = jax.eval_shape(lambda: model.readout(model.init_state(x[0]), x[0]))
    valid = jax.vmap(lambda t: cost.valid_target(prediction.shape, t))(y)
    ok = jnp.all(valid) & jnp.all(jnp.isfinite(x)) & tree_isfinite(parameters(model)[0])
    grads = jtu.tree_map(lambda g: jnp.where(ok, g, jnp.nan), grads)
    result = RESULTS.where(ok, info.result, RESULTS.invalid_input)
    return grads, eqx.tree_at(lambda i: i.result, info, result)


@eqx.filter_custom_jvp
def _not_differentiable(rule, model, x, y, cost, solver, key):
    return _estimate(rule, model, x, y, cost, solver, key)


@_not_differentiable.def_jvp
def _not_differentiable_jvp(primals, tangents):
    rule, *_ = primals
    if any(t is not None for t in jtu.tree_leaves(tangents, is_leaf=_is_none)):
        raise ValueError(
            f"holoode.gradient: the gradient computed by {type(rule).__name__} cannot "
            "be differentiated. The rules treat the equilibrium as a constant "
            "(holomorphic and classic EP stop gradients through the model, implicit "
            "differentiation holds the equilibrium and its adjoint fixed), so "
            "`jax.grad`, `jax.jvp` or `jax.hessian` through `holoode.gradient` would "
            "give zeros or a partial derivative, not the derivative of the gradient. "
            "Fix: keep `holoode.gradient` out of the differentiated function (pass "
            "`jax.lax.stop_gradient(model)` if a surrounding `jax.grad` sees it), "
            "and take finite differences of `holoode.gradient` for second-order "
            "information."
        )
    return _estimate(*primals), None


def _is_none(a) -> bool:
    return a is None


def _advice(name: str, rule, solver) -> str:
    """Advice that depends on the rule and the solver in use, so that a message never
    suggests what is already there."""
    extra = ""
    if isinstance(rule, ContinuousHEP) and name == "max_steps_reached":
        extra += (
            " ContinuousHEP integrates one run (warm-up and every period) within "
            "the solver's `max_steps`: raise it, e.g. "
            "`holoode.SteadyStateODE(max_steps=100_000)`."
        )
    elif name == "max_steps_reached" and not isinstance(solver, RootFind):
        extra += (
            " A Newton solver often converges in fewer steps: `holoode.RootFind()`."
        )
    elif name in SOLVER_FAILURES[1:]:
        extra += (
            f" The cause was found inside the equilibrium solver {describe(solver)} "
            "(the message above is the solver library's). Fix: try another solver; "
            "`holoode.SteadyStateODE()` follows the network's own dynamics to a "
            "stable state, `holoode.FixedPointIteration()` is the most robust of "
            "the fast ones."
        )
    complex_states = isinstance(rule, ContinuousHEP) or (
        isinstance(rule, HolomorphicEP) and rule.num_points > 2
    )
    failed = name in ("nonfinite", *SOLVER_FAILURES)
    if failed and complex_states:
        extra += (
            f" {type(rule).__name__} solves at complex β: a model that is not "
            "holomorphic (`abs`, `conj`, `maximum`, `relu`, ...) fails there even "
            "when its real equilibria are fine. Check it with "
            "`holoode.check_holomorphic(model, x[0])`."
        )
    return extra


def _raise_on_failure(grads, info: Info, rule, solver):
    context = f"holoode.gradient({describe(rule)}, solver={describe(solver)}) failed: "
    messages = [
        context + RESULTS[getattr(RESULTS, name)] + _advice(name, rule, solver)
        for name in RESULT_NAMES
    ]
    return eqx.branched_error_if(
        grads, info.result != RESULTS.successful, result_code(info.result), messages
    )


def gradient(
    rule: AbstractLearningRule,
    model: AbstractEquilibriumModel,
    x: ArrayLike,
    y: ArrayLike,
    *,
    cost: AbstractCost,
    solver: AbstractEquilibriumSolver | None = None,
    key: PRNGKeyArray | None = None,
    throw: bool = True,
) -> tuple[PyTree, Info]:
    """The gradient of the batch-mean cost at the free equilibrium, by any rule.

    **Arguments:**

    - `rule`: a learning rule, e.g. `holoode.HolomorphicEP(beta=0.1, num_points=4)`.
    - `model`: a `holoode.AbstractEnergyModel` or `holoode.AbstractPrimitiveModel`
      (one example, no batch axis).
    - `x`: inputs with a leading batch axis, dtype matching the parameters.
    - `y`: targets with the same leading batch axis (integer labels for
      `CrossEntropy`, vectors for `SquaredError`).
    - `cost`: the cost, e.g. `holoode.CrossEntropy()`.
    - `solver`: the equilibrium solver (default: the rule's `default_solver()`,
      `holoode.SteadyStateODE()` for most rules, Anderson acceleration for
      `holoode.HolomorphicEP`).
    - `key`: a PRNG key for rules that use noise (ignored by deterministic rules).
    - `throw`: if `True` (default), raise when an equilibrium is not reached, the
      continuation is lost, or the gradient is not finite, with a message naming
      the cause and the fix. With `throw=False`, inspect `info.result`; this is the
      reliable choice under `vmap` and on GPUs.

    **Returns:** `(grads, info)`: `grads` is shaped like
    `eqx.filter_grad(loss)(model)` (arrays for the inexact array leaves, `None`
    elsewhere), ready for Optax; `info` is a `holoode.Info`.

    Checks before any solve: the shapes and dtypes of `x` and `y`, finite inputs
    and parameters, labels within the classes, scalar energies and costs (each
    refusal names the argument and the fix). Under `jax.jit` the values are not
    known then, so bad ones give `RESULTS.invalid_input` and a NaN gradient.

    The result cannot be differentiated: `jax.grad` or `jax.jvp` through this
    function raises a `ValueError` (the rules hold the equilibrium fixed, so a
    derivative would be zero or partial, not the derivative of the gradient).
    """
    x, y = _check_arguments(rule, model, x, y, cost, solver)
    solver = rule.default_solver() if solver is None else solver
    grads, info = _not_differentiable(rule, model, x, y, cost, solver, key)
    if throw:
        grads = _raise_on_failure(grads, info, rule, solver)
    return grads, info
