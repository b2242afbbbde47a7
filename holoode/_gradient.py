"""`holoode.gradient`: the one entry point to every learning rule."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import ArrayLike, PRNGKeyArray, PyTree

from ._costs import AbstractCost
from ._equilibrium import AbstractEquilibriumSolver, SteadyStateODE
from ._learning import AbstractLearningRule
from ._learning.base import describe
from ._misc import real_dtype, tree_dtype
from ._model import AbstractEquilibriumModel
from ._solution import Info, RESULTS


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
    try:
        state = jax.eval_shape(model.init_state, x[0])
        prediction = jax.eval_shape(model.readout, state, x[0])
    except Exception as e:  # the model's own error is the most useful message
        raise ValueError(
            f"holoode.gradient: `x` with per-example shape {x.shape[1:]} does not fit "
            f"the model: {e}"
        ) from e
    try:
        cost.check_target(prediction.shape, jax.ShapeDtypeStruct(y.shape[1:], y.dtype))
    except ValueError as e:
        raise ValueError(f"holoode.gradient: `y` does not fit the cost: {e}") from None
    return x, y


@eqx.filter_jit
def _estimate(rule, model, x, y, cost, solver, key):
    return rule.estimate(model, x, y, cost=cost, solver=solver, key=key)


def _raise_on_failure(grads, info: Info, rule, solver):
    context = f"holoode.gradient({describe(rule)}, solver={solver}) failed: "
    messages = [context + message for message in RESULTS._index_to_message]
    index = info.result._value
    return eqx.branched_error_if(
        grads, info.result != RESULTS.successful, index, messages
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
    - `solver`: the equilibrium solver (default `holoode.SteadyStateODE()`).
    - `key`: a PRNG key for rules that use noise (ignored by deterministic rules).
    - `throw`: if `True` (default), raise when an equilibrium is not reached, the
      continuation is lost, or the gradient is not finite, with a message naming
      the cause and the fix. With `throw=False`, inspect `info.result`; this is the
      reliable choice under `vmap` and on GPUs.

    **Returns:** `(grads, info)`: `grads` is shaped like
    `eqx.filter_grad(loss)(model)` (arrays for the inexact array leaves, `None`
    elsewhere), ready for Optax; `info` is a `holoode.Info`.
    """
    x, y = _check_arguments(rule, model, x, y, cost, solver)
    solver = SteadyStateODE() if solver is None else solver
    grads, info = _estimate(rule, model, x, y, cost, solver, key)
    if throw:
        grads = _raise_on_failure(grads, info, rule, solver)
    return grads, info
