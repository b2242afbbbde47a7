"""Equilibria by integrating the dynamics to steady state with Diffrax."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx

from .._misc import as_int, tree_vdot
from .._solution import RESULTS
from .base import AbstractEquilibriumSolver, complex_checked, finish, real_view


# The slowest relaxation rate believed: caps the distance factor at 1000, as the
# fixed-point loops do.
_MIN_RATE = 1e-3


def _near_equilibrium(rtol, atol):
    """A Diffrax event condition: the distance `‖f‖ / min(λ, 1)` to the
    equilibrium, with the slowest rate `λ` from the Rayleigh quotient of the
    Jacobian along `f`, is within `atol + rtol ‖u‖`."""

    def cond_fn(t, y, args, *, terms, solver, **kwargs):
        del kwargs
        field = lambda v: solver.func(terms, t, v, args)  # noqa: E731
        f, jf = jax.jvp(field, (y,), (field(y),))
        ff = jnp.real(tree_vdot(f, f))
        fjf = tree_vdot(f, jf)
        rate = jnp.abs(fjf) / jnp.where(ff > 0, ff, 1)
        rate = jnp.clip(jnp.nan_to_num(rate, nan=_MIN_RATE), _MIN_RATE, 1.0)
        return optx.rms_norm(f) / rate < atol + rtol * optx.rms_norm(y)

    return cond_fn


class SteadyStateODE(AbstractEquilibriumSolver):
    """Run the network's dynamics `du/dt = f(u)` until it stops moving.

    A Diffrax solve from `t = 0` to `t = ∞`, terminated by a steady-state event
    when the estimated *distance* to the equilibrium is within tolerance:
    `rms(f(u)) / min(λ, 1) < atol + rtol · rms(u)`. Near an equilibrium the
    dynamics have damped every mode but the slowest, so `f` points along it and
    decays at its rate `λ`; the distance is then `‖f‖/λ`, with `λ` measured by
    the Rayleigh quotient `|⟨f, J f⟩| / ⟨f, f⟩` (one Jacobian-vector product per
    step; `λ` is floored at 1e-3). For a network that relaxes slowly (`λ ≪ 1`)
    a test on `‖f‖` alone would stop `1/λ` times too far from the equilibrium.
    This finds the equilibrium the physical network would settle
    in, which makes it the most robust choice for the free phase.

    Caveat on tolerances: Runge–Kutta methods have exactly the fixed points of `f`,
    but an explicit method whose step grows to the edge of its stability region
    hovers around the equilibrium at the level of the step-size controller's
    tolerance. The default controller therefore uses the steady-state tolerances;
    a looser controller only helps with an L-stable implicit solver.

    It is also holoode's one integrator: `ContinuousHEP`, `NeuronNoise` and
    `online_plasticity` integrate in time through `integrate` (`ContinuousHEP`
    with the solver, tolerances, step-size controller and `max_steps` given
    here; `NeuronNoise` with Euler–Maruyama at its own `dt`).

    Complex states are integrated natively by default. With `split_complex=True` the
    state is carried as real and imaginary parts (the field is then
    `(Re f(a + ib), Im f(a + ib))`): use this with implicit solvers such as
    `dfx.Kvaerno5()`, whose Newton iterations need a real state.

    **Arguments:**

    - `solver`: a Diffrax solver (default `dfx.Tsit5()`).
    - `rtol`, `atol`: steady-state tolerances (`None`: the dtype's default).
    - `max_steps`: at most this many solver steps.
    - `stepsize_controller`: default `dfx.PIDController` at the steady-state
      tolerances.
    - `dt0`: initial step (`None`: chosen automatically).
    - `split_complex`: integrate complex states as real pairs.
    """

    solver: dfx.AbstractSolver = dfx.Tsit5()
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=4096, converter=as_int)
    stepsize_controller: dfx.AbstractStepSizeController | None = None
    dt0: float | None = None
    split_complex: bool = False

    def controller(self, u0) -> dfx.AbstractStepSizeController:
        """The step-size controller a run from `u0` uses: `stepsize_controller`,
        or a `dfx.PIDController` at this solver's tolerances (RMS norm). Every
        integration in holoode that takes this solver takes its controller from
        here, so the tolerances a user sets are the ones applied."""
        if self.stepsize_controller is not None:
            return self.stepsize_controller
        rtol, atol = self.tolerances(u0)
        return dfx.PIDController(rtol=rtol, atol=atol, norm=optx.rms_norm)

    def integrate(
        self,
        terms: dfx.AbstractTerm,
        t0,
        t1,
        y0,
        *,
        saveat: dfx.SaveAt,
        controller: dfx.AbstractStepSizeController | None = None,
        max_steps: int | None = None,
        differentiable: bool = False,
        **kwargs,
    ) -> dfx.Solution:
        """`dfx.diffeqsolve(terms, ...)` from `t0` to `t1` with this solver's Diffrax
        solver, `dt0`, step-size controller (or `controller`) and `max_steps` (or
        a tighter one): the one place where holoode integrates in time (the
        steady state here, `ContinuousHEP`'s driven run, `NeuronNoise`'s samples,
        `online_plasticity`). Never raises: read `result`. Reverse-mode
        gradients flow through the steps (checkpointed) only if `differentiable`;
        otherwise it is a plain while loop, which compiles faster and stores
        nothing. `kwargs` go to `diffeqsolve` (`args`, `event`, carried solver
        and controller states)."""
        with complex_checked():
            return dfx.diffeqsolve(
                terms,
                self.solver,
                t0=t0,
                t1=t1,
                dt0=self.dt0,
                y0=y0,
                stepsize_controller=self.controller(y0)
                if controller is None
                else controller,
                saveat=saveat,
                max_steps=self.max_steps if max_steps is None else max_steps,
                adjoint=dfx.RecursiveCheckpointAdjoint()
                if differentiable
                else dfx.ForwardMode(),
                throw=False,
                **kwargs,
            )

    def solve(self, vector_field, u0, *, differentiable):
        rtol, atol = self.tolerances(u0)
        field, y0, to_state = real_view(vector_field, u0, self.split_complex)
        sol = self.integrate(
            dfx.ODETerm(lambda t, y, f: f(y)),
            0.0,
            jnp.inf,
            y0,
            args=field,
            controller=self.controller(u0),
            event=dfx.Event(_near_equilibrium(rtol, atol)),
            saveat=dfx.SaveAt(t1=True),
            differentiable=differentiable,
        )
        value = to_state(jtu.tree_map(lambda y: y[-1], sol.ys))
        # The steady-state event is this solver's success; any other end keeps
        # Diffrax's cause (`max_steps_reached`, `dt_min_reached`, ...).
        settled = sol.result == dfx.RESULTS.event_occurred
        result = RESULTS.where(settled, RESULTS.successful, RESULTS.promote(sol.result))
        return finish(vector_field, value, sol.stats["num_steps"], result)
