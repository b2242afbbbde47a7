"""Result codes, equilibria and the diagnostics returned with every gradient."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree


class RESULTS(eqx.Enumeration):
    """Why an equilibrium (or a gradient) is, or is not, trustworthy."""

    successful = ""
    max_steps_reached = (
        "The equilibrium solver stopped at `max_steps` before the residual fell "
        "below its tolerance. Fix: raise `max_steps` of the solver, loosen "
        "`rtol`/`atol`, or pick a faster solver (e.g. `holoode.RootFind()`)."
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
    nonfinite_gradient = (
        "The gradient contains NaN or inf. Fix: check the inputs for NaN and the "
        "model for overflow (float32 with large weights)."
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
