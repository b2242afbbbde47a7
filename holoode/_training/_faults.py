"""Why a run keeps skipping steps: a diagnosis for the message that stops it."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._misc import tree_astype
from .._stability import safe_beta
from . import _build
from ._config import TrainConfig


class TrainingStopped(RuntimeError):
    """Raised by `holoode.train` after `max_consecutive_skips` skipped steps in a
    row; the message says why the steps failed and what to change."""


_ADVICE = {
    "max_steps_reached": "the equilibrium solver ran out of steps: raise "
    "--set solver_max_steps=... or loosen --set solver_tol=...",
    "nonfinite": "the dynamics diverged: lower the learning rate or --beta",
    "continuation_lost": "the nudged equilibria do not continue analytically "
    "around the circle |β| e^{iφ}: lower --beta",
    "nonfinite_gradient": "the gradient is not finite: check the data for NaN and "
    "lower the learning rate (or use --set dtype=float64)",
    "nonlinear_divergence": "Anderson acceleration stalled at a nudged point: "
    "--set solver=fixed-point (or ode)",
    "unstable_equilibrium": "the free equilibrium is a saddle or maximum of the "
    "energy: lower the learning rate, or --set solver=ode",
}


def diagnose(config: TrainConfig, plan, model, x, y, skips: dict) -> str:
    """A message naming the reasons of the skipped steps and, for the rules that
    use a teaching signal of size |β|, comparing |β| with the safe radius that
    `holoode.safe_beta` estimates on the last batch."""
    total = sum(skips.values())
    lines = [
        f"Training stopped after {config.max_consecutive_skips} consecutive skipped "
        f"steps ({total} in all; the parameters were not updated by any of them)."
    ]
    for reason, count in sorted(skips.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {count}× {reason}: {_ADVICE.get(reason, reason)}.")
    if config.rule in ("hep", "continuous", "ep", "ep-sym"):
        x = _build.prepare(config, x)
        if jax.config.read("jax_enable_x64"):
            # The estimate in double precision when it is available.
            params, static = eqx.partition(model, eqx.is_inexact_array)
            model = eqx.combine(tree_astype(params, jnp.float64), static)
            x = x.astype(jnp.float64)
        radius = float(safe_beta(model, x, y, cost=plan.cost, solver=plan.eval_solver))
        if config.beta >= radius:
            lines.append(
                f"|β| = {config.beta:g} exceeds the estimated safe radius "
                f"{radius:.2g} for this model; lower --beta (e.g. --beta "
                f"{_nice(0.5 * radius)})."
            )
        elif math.isfinite(radius):
            lines.append(
                f"|β| = {config.beta:g} is inside the estimated safe radius "
                f"{radius:.2g}, so the teaching signal is not the cause."
            )
    return "\n".join(lines)


def _nice(value: float) -> str:
    return f"{float(f'{value:.1g}'):g}"
