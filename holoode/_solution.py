"""Result codes, equilibria and the diagnostics returned with every gradient."""

import dataclasses
import warnings
from collections.abc import Sequence

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from ._misc import tree_isfinite


# `max_steps_reached` and `nonfinite` are inherited; holoode restates them for its
# equilibrium solvers (same cause, a fix that names holoode's knobs), which Equinox
# reports as a redefinition.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Enumeration has duplicate incompatible values")

    class RESULTS(dfx.RESULTS):
        """Why an equilibrium (or a gradient) is, or is not, trustworthy.

        Chained onto Diffrax's results (themselves chained onto Optimistix's and
        Lineax's), so that a cause found inside a solver is kept rather than reduced to
        a failure: an Optimistix root find that meets a singular Jacobian reports
        `singular`, Anderson acceleration that stalls `nonlinear_divergence`, an ODE
        whose step size collapses `dt_min_reached`. `RESULTS.promote` converts those
        libraries' results; `holoode`'s own causes follow.
        """

        max_steps_reached = (
            "The equilibrium solver stopped at `max_steps` before the residual fell "
            "below its tolerance. Fix: raise `max_steps` of the solver, loosen "
            "`rtol`/`atol`, or pick another solver."
        )
        nonfinite = (
            "The equilibrium solve produced NaN or inf: the dynamics diverged. Fix: "
            "reduce |β|, reduce the step size of the solver, or check the model's "
            "weights (a too-large coupling has no stable equilibrium)."
        )
        continuation_lost = (
            "The nudged equilibria around the circle |β| e^{iφ} are not one analytic "
            "function of β: their Fourier harmonics do not decay, so |β| is at or "
            "beyond the radius in which the equilibrium continues analytically and "
            "the holomorphic EP gradient would be wrong. Fix: reduce |β| (below the "
            "estimated safe radius `|β| / info.radius_ratio`), or raise `num_points` "
            "for a sharper estimate of that radius."
        )
        unstable_equilibrium = (
            "The free equilibrium found is not stable: the linearised dynamics have a "
            "growing direction, so the solver converged to a maximum or saddle of the "
            "energy that the network itself would leave, and EP's gradient formula "
            "does not apply there. Fix: check that the energy is bounded below "
            "(couplings not too strong), start from another initial state, or use "
            "`holoode.SteadyStateODE`, which follows the dynamics to a stable state."
        )
        period_too_short = (
            "The network does not follow the rotating teaching signal closely: the "
            "error estimate `info.error_estimate` (read off its lag and its drift) "
            "exceeds the rule's `max_error_estimate`, so the oscillation `period` is "
            "at or below the time the network needs to relax. Fix: raise `period` "
            "well above "
            "`holoode.relaxation_time(model, x, y, cost=cost)` (the lag bias falls "
            "like (τ / period)²), or pass `richardson=True`."
        )
        nonfinite_gradient = (
            "The gradient contains NaN or inf. Fix: check the inputs for NaN and the "
            "model for overflow (float32 with large weights)."
        )
        invalid_input = (
            "The batch or the model holds values the gradient cannot be computed from: "
            "NaN or inf in `x`, `y` or the parameters, or an integer label outside "
            "the classes of the readout (`CrossEntropy` needs 0 ≤ y < number of "
            "classes). Fix: clean the data (map labels to 0 … classes − 1) or restore "
            "finite parameters; `holoode.gradient` names the culprit when called on "
            "concrete (not traced) arrays."
        )
        adjoint_failed = (
            "The adjoint linear solve of implicit differentiation, `(∂f/∂u)ᵀ λ = "
            "∂C/∂u` at the free equilibrium, did not converge: the iterative solver "
            "ran out of steps, or the Jacobian is singular or badly conditioned there "
            "(a degenerate equilibrium). Fix: for small states solve it directly, "
            "`ImplicitDifferentiation(linear_solver=lineax.LU())`; otherwise give "
            "GMRES more steps, e.g. `lineax.GMRES(rtol, atol, restart=100, "
            "max_steps=5000)`."
        )


class Equilibrium(eqx.Module):
    """An equilibrium found by an equilibrium solver (one example, one β).

    **Fields:**

    - `value`: the state `u*`.
    - `num_steps`: steps the solver took (solver steps, not function evaluations).
    - `residual`: RMS of the vector field at `u*`.
    - `result`: a `holoode.RESULTS` code.
    """

    value: PyTree[Array]
    num_steps: Int[Array, ""]
    residual: Float[Array, ""]
    result: RESULTS


class Info(eqx.Module):
    """Diagnostics returned by `holoode.gradient`.

    **Fields:**

    - `loss`: batch-mean cost at the free equilibrium (`nan` if the rule does not
      compute the free equilibrium).
    - `num_steps`: solver steps, shape `(batch, solves)`.
    - `residual`: RMS vector-field residual at each equilibrium, same shape.
    - `reached`: whether each equilibrium met its tolerance, same shape.
    - `error_estimate`: a-posteriori estimate of the relative error of the
      gradient (holomorphic EP: the aliasing error extrapolated from the
      harmonics of the same samples; `nan` where no estimate exists).
    - `radius_ratio`: per example, `|β| / R` estimated from the decay of the
      state's harmonics, where `R` is the radius of analyticity of the
      equilibrium in β (`nan` where not computed). Values near or above 1 mean the
      gradient cannot be trusted.
    - `result`: the overall `holoode.RESULTS` code.
    """

    loss: Float[Array, ""]
    num_steps: Int[Array, "batch solves"]
    residual: Float[Array, "batch solves"]
    reached: Bool[Array, "batch solves"]
    error_estimate: Float[Array, ""]
    radius_ratio: Float[Array, " batch"]
    result: RESULTS

    @property
    def all_reached(self) -> Bool[Array, ""]:
        return jnp.all(self.reached)

    @classmethod
    def from_equilibria(
        cls,
        loss: ArrayLike,
        equilibria: Sequence[Equilibrium],
        grads: PyTree,
        *,
        error_estimate: ArrayLike | None = None,
        radius_ratio: Array | None = None,
        max_radius_ratio: float | None = None,
        finite: ArrayLike = True,
    ) -> "Info":
        """The `Info` of a rule's estimate: what a learning rule returns.

        **Arguments:**

        - `loss`: the batch-mean cost at the free equilibrium.
        - `equilibria`: the batched solves the estimate used, each shaped
          `(batch,)` or `(batch, points)`; their step counts, residuals and
          result codes fill `num_steps`, `residual` and `reached` (one column
          per solve).
        - `grads`: the estimate (checked for NaN and inf).
        - `error_estimate`, `radius_ratio`: the rule's diagnostics, if any.
        - `max_radius_ratio`: with `radius_ratio`, the threshold at or above
          which the circle is taken to leave the analytic disc.
        - `finite`: `False` if something other than the equilibria went
          non-finite (e.g. noisy samples).

        `result` is the most telling code, in order: `unstable_equilibrium` (a
        free state the network would leave makes everything else meaningless),
        `continuation_lost` if some `radius_ratio ≥ max_radius_ratio` (it
        explains every other failure), `nonfinite`, a solver's failure
        (`max_steps_reached`, then the causes the solver libraries report:
        `singular`, `nonlinear_divergence`, `dt_min_reached`, ...),
        `continuation_lost` where the ratio could not be judged (NaN),
        `nonfinite_gradient`, `successful`.
        """

        def columns(a):
            return a[:, None] if a.ndim == 1 else a

        def any_result(code):
            return jnp.any(jnp.array([jnp.any(e.result == code) for e in equilibria]))

        num_steps = jnp.concatenate([columns(e.num_steps) for e in equilibria], 1)
        batch = num_steps.shape[0]
        if radius_ratio is None or max_radius_ratio is None:
            continuation_ok, circle_lost = jnp.array(True), jnp.array(False)
        else:
            continuation_ok = jnp.all(radius_ratio < max_radius_ratio)
            circle_lost = jnp.any(radius_ratio >= max_radius_ratio)
        result = RESULTS.where(
            tree_isfinite(grads), RESULTS.successful, RESULTS.nonfinite_gradient
        )
        result = RESULTS.where(continuation_ok, result, RESULTS.continuation_lost)
        # A solver's own cause (out of steps first, then the others in their order).
        for name in reversed(SOLVER_FAILURES):
            code = getattr(RESULTS, name)
            result = RESULTS.where(any_result(code), code, result)
        nonfinite = any_result(RESULTS.nonfinite) | ~jnp.all(finite)
        result = RESULTS.where(nonfinite, RESULTS.nonfinite, result)
        result = RESULTS.where(circle_lost, RESULTS.continuation_lost, result)
        result = RESULTS.where(
            any_result(RESULTS.unstable_equilibrium),
            RESULTS.unstable_equilibrium,
            result,
        )
        return cls(
            loss=jnp.asarray(loss),
            num_steps=num_steps,
            residual=jnp.concatenate([columns(e.residual) for e in equilibria], 1),
            reached=jnp.concatenate(
                [columns(e.result == RESULTS.successful) for e in equilibria], 1
            ),
            error_estimate=jnp.asarray(
                jnp.nan if error_estimate is None else error_estimate
            ),
            radius_ratio=jnp.full((batch,), jnp.nan)
            if radius_ratio is None
            else radius_ratio,
            result=result,
        )

    def __repr__(self) -> str:
        return _summary(self)

    __str__ = __repr__


# Equinox lists an enumeration's members only privately; this is the one place
# that reads the list.
RESULT_NAMES: tuple[str, ...] = tuple(RESULTS._name_to_item)
# Why a solve can fail inside the solver libraries (`nonfinite` is judged by
# holoode itself, from the state).
SOLVER_FAILURES = ("max_steps_reached",) + tuple(
    name
    for name in RESULT_NAMES
    if hasattr(dfx.RESULTS, name)
    and name not in ("successful", "max_steps_reached", "nonfinite", "event_occurred")
)


def first_failure(result: RESULTS, later: RESULTS) -> RESULTS:
    """`result` if it is a failure, else `later`: the first cause is kept."""
    return RESULTS.where(result == RESULTS.successful, later, result)


def result_code(result: RESULTS) -> Int[Array, "*batch"]:
    """The position of `result` in `RESULT_NAMES` (elementwise under `vmap`), from
    comparisons with each member."""
    return sum(
        jnp.where(result == getattr(RESULTS, name), i, 0)
        for i, name in enumerate(RESULT_NAMES)
    )


def _result_name(result: RESULTS) -> str:
    value = np.asarray(result_code(result))
    if value.ndim == 0:
        return RESULT_NAMES[int(value)]
    # A batch of results (under `vmap`): count each kind.
    kinds, counts = np.unique(value, return_counts=True)
    return ", ".join(f"{c}× {RESULT_NAMES[int(k)]}" for k, c in zip(kinds, counts))


def _describe_value(value) -> str:
    """A value as a few numbers: scalars in full, arrays by their worst entry."""
    if isinstance(value, RESULTS):
        if any(
            isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(value)
        ):
            return "RESULTS (traced)"
        return _result_name(value)
    if isinstance(value, jax.core.Tracer):
        return f"traced {value.dtype}{list(value.shape)}"
    if not eqx.is_array(value):
        return repr(value)
    a = np.asarray(value)
    shape = " × ".join(map(str, a.shape))
    if a.size == 0:
        return f"empty ({shape})"
    if a.dtype == bool:
        return f"{int(a.sum())} of {a.size}"
    if a.ndim == 0:
        return f"{a.item():.6g}"
    if np.issubdtype(a.dtype, np.integer):
        return f"max {a.max()}, mean {a.mean():.4g} ({shape})"
    if np.all(np.isnan(a)):
        return f"nan ({shape})"
    worst = np.nanmax(np.abs(a)) if np.iscomplexobj(a) else np.nanmax(a)
    return f"max {worst:.3g} ({shape})"


def _summary(module: eqx.Module) -> str:
    """Every field of `module` by value: readable in `print(info)`."""
    fields = [f.name for f in dataclasses.fields(module)]
    width = max(map(len, fields))
    lines = [
        f"  {name:<{width}}  {_describe_value(getattr(module, name))}"
        for name in fields
    ]
    return f"{type(module).__name__}(\n" + "\n".join(lines) + "\n)"
