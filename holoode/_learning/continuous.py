"""Continuous-time holomorphic EP: one run, a rotating teaching signal."""

import operator

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optimistix as optx

from .._equilibrium import SteadyStateODE
from .._equilibrium.base import complex_checked, merge, split
from .._equilibrium.batched import initial_states
from .._misc import (
    complex_dtype,
    real_dtype,
    stop_gradient,
    tree_astype,
    tree_dtype,
    tree_isfinite,
    tree_norm,
)
from .._model import learning_signal, parameters
from .._noise import NeuronNoise
from .._solution import Equilibrium, first_failure, Info, RESULTS
from .base import AbstractLearningRule, as_beta, concrete, free_loss, real_scalar


class _Driven(eqx.Module):
    """The batch's neurons under the rotating teaching signal `β(t) = |β| e^{iωt}`.

    Only the neurons are integrated: the learning signal
    (`holoode.learning_signal`) is read off their state at sample times, so the
    step-size control and the Runge–Kutta stages see the `n` neurons, not the much
    larger parameter vector."""

    model: eqx.Module
    x: jax.Array
    y: jax.Array
    cost: eqx.Module
    beta: jax.Array
    omega: jax.Array
    split_state: bool

    def __call__(self, t, state, args):
        del args
        u = merge(state[0]) if self.split_state else state[0]
        beta_t = self.beta * jnp.exp(1j * self.omega * t).astype(tree_dtype(u))
        du = jax.vmap(
            lambda u_b, x_b, y_b: self.model.vector_field(
                u_b, x_b, y_b, beta_t, self.cost
            )
        )(u, self.x, self.y)
        return (split(du) if self.split_state else du, None)


class ContinuousHEP(AbstractLearningRule):
    """Single-phase, continuous-time holomorphic EP (Laborieux & Zenke, 2022, §5).

    The network runs its own dynamics (`du/dt = f(u, β(t))`, the model's vector
    field) from `init_state`, while the teaching signal rotates,
    `β(t) = |β| e^{iωt}`, `ω = 2π / period`. After a warm-up, the learning signal
    is averaged online over `K` whole periods of length `T`:

        g = (1 / (|β| K T)) ∫ Re[∂F/∂θ(u(t), β(t)) e^{−iωt}] dt.

    No free phase, no nudged phase, no stored states. If the network followed its
    quasi-static equilibrium `u*_{β(t)}` exactly, `g` would be the exact gradient
    (the first Fourier coefficient, as in `holoode.HolomorphicEP` with N → ∞). It
    lags by about `τ ω` (`τ`: relaxation time); the first-order lag is imaginary
    and drops out of the real part, so the bias falls like `(τ/T)²`. Choose the
    period well above the relaxation time, which `holoode.relaxation_time` measures
    (`tests/test_continuous.py` fits the error against the period: order 2, and
    order 4 with `richardson=True`). The default `period=100` suits networks with
    `τ` of a few time units; networks with many neurons or trained ones can relax
    far more slowly (check `relaxation_time`).

    **The integral.** Only the neurons are integrated by the ODE solver; the
    accumulator is a running sum of the signal at `num_samples` equally spaced
    times per period (updated between solver segments, never stored). For a
    periodic signal this rectangle rule is spectrally accurate: its only error is
    the aliasing of the signal's harmonics `num_samples ± 1`, which fall like
    `|β|^{num_samples}` exactly as for `holoode.HolomorphicEP(beta, num_samples)`
    (the two agree at long periods). The solver's step-size control therefore
    sees only the `n` neurons, not the parameter-sized accumulator.

    **The integrator** is the `holoode.SteadyStateODE` passed as `solver` to
    `holoode.gradient`, with its settings: its Diffrax `solver` (default
    `dfx.Tsit5()`), `rtol`/`atol` (`None`: the dtype's default) for its default
    `dfx.PIDController`, or its own `stepsize_controller` and `dt0` (e.g.
    `SteadyStateODE(dfx.Euler(), stepsize_controller=dfx.ConstantStepSize(),
    dt0=0.5)` for a fixed step: each segment between samples is then split into
    equal steps no longer than `dt0`, taken in a compiled loop with the solver's
    own `step`), and `split_complex`. Its `max_steps` bounds the
    solver steps of the whole run (warm-up and all periods; each of the two runs
    with `richardson=True`): a run that needs more fails with
    `RESULTS.max_steps_reached`. With `noise`, the run is an SDE integrated by
    Euler–Maruyama with step `noise.dt`: the solver's `max_steps` applies, and
    tolerances, `stepsize_controller` or `dt0` set on it are refused.

    **Arguments:**

    - `beta`: the amplitude `|β| > 0`.
    - `period`: the period `T > 0` of the oscillation, in the dynamics' time units.
    - `num_periods`: the number `K ≥ 1` of whole periods to average over.
    - `warmup`: time (in periods) run before averaging starts, so that the network
      has settled onto its oscillation (default 0.5).
    - `num_samples`: samples of the learning signal per period (default 16; at
      least 3, since a rectangle rule with 2 samples per period cannot separate
      the first harmonic from its conjugate).
    - `noise`: a `holoode.NeuronNoise` (its `std` and `dt`): the accumulator then
      averages the noisy signal (needs `key`).
    - `richardson`: also run with period `T/2` and return `(4 g_T − g_{T/2}) / 3`,
      which cancels the `1/T²` bias (error `O(1/T⁴)`) for 1.5× the time. A
      correction beyond the paper.
    - `max_error_estimate`: the largest `info.error_estimate` accepted; above it
      the result is `RESULTS.period_too_short` (an error under `throw=True`).
      Default 0.25.

    `info.error_estimate` is the larger of two estimates of the relative error:
    the lag, `δ²/2` with `δ = ‖Im‖/‖Re‖` the lag phase read off the imaginary part
    of the accumulated signal (a single-mode model; with `richardson=True`, the
    size of the removed correction — conservative); and the drift, how far the
    state moved between the start and the end of the averaging window (zero once
    the network has settled onto its oscillation) relative to its oscillation,
    `‖u(t_end) − u(t_start)‖ / (2πK ‖u₁‖)` with `u₁` the state's first harmonic.
    The drift catches a period so short that the network has barely moved and so
    barely lags, yet is far from any equilibrium.
    """

    beta: jax.Array = eqx.field(default=0.1, converter=as_beta)
    period: jax.Array = eqx.field(default=100.0, converter=real_scalar("period"))
    num_periods: int = 1
    warmup: float = 0.5
    num_samples: int = 16
    richardson: bool = False
    noise: NeuronNoise | None = None
    max_error_estimate: float = 0.25

    def __check_init__(self):
        # NumPy scalars (`np.int64(4)`, e.g. read from an array of settings) stand
        # for the Python numbers they hold; left as they are, `jit` would trace
        # them and they could not set the length of the run.
        for name, convert in (
            ("num_periods", operator.index),
            ("num_samples", operator.index),
            ("warmup", float),
            ("max_error_estimate", float),
            ("richardson", bool),
        ):
            value = getattr(self, name, None)
            if isinstance(value, np.generic) and not (
                convert is operator.index and isinstance(value, np.bool_)
            ):
                try:
                    object.__setattr__(self, name, convert(value))
                except TypeError:
                    pass  # not a number of the right kind: refused below
        beta = concrete(self.beta)
        if beta is not None and not 0 < beta < float("inf"):
            raise ValueError(
                "ContinuousHEP(beta=...) is the amplitude |β| and must be a finite "
                f"positive number, got {beta}; e.g. `ContinuousHEP(beta=0.1)`."
            )
        period = concrete(self.period)
        if period is not None and not 0 < period < float("inf"):
            raise ValueError(
                "ContinuousHEP(period=...) must be a finite positive number, got "
                f"{period}; e.g. `ContinuousHEP(period=100.0)`."
            )
        if not (isinstance(self.num_periods, int) and self.num_periods >= 1):
            raise ValueError(
                "ContinuousHEP(num_periods=...) must be an integer ≥ 1 (the estimate "
                f"averages over whole periods), got {self.num_periods!r}."
            )
        if not (isinstance(self.warmup, (int, float)) and self.warmup >= 0):
            raise ValueError(
                f"ContinuousHEP(warmup=...) must be ≥ 0 periods, got {self.warmup!r}."
            )
        if not (isinstance(self.num_samples, int) and self.num_samples >= 3):
            raise ValueError(
                "ContinuousHEP(num_samples=...) must be an integer ≥ 3 (samples of "
                f"the learning signal per period), got {self.num_samples!r}."
            )
        if not (
            isinstance(self.max_error_estimate, (int, float))
            and self.max_error_estimate > 0
        ):
            raise ValueError(
                "ContinuousHEP(max_error_estimate=...) must be a positive number "
                f"(e.g. 0.25), got {self.max_error_estimate!r}."
            )

    def estimate(self, model, x, y, *, cost, solver, key):
        if not isinstance(solver, SteadyStateODE):
            raise ValueError(
                "ContinuousHEP integrates the dynamics in time, so it needs an ODE "
                "integrator: pass `solver=holoode.SteadyStateODE(solver=dfx.Tsit5())` "
                f"(or another Diffrax solver) instead of {type(solver).__name__}."
            )
        if self.noise is not None:
            if key is None:
                raise ValueError(
                    "holoode.gradient: ContinuousHEP with neuron noise needs a PRNG "
                    "key: pass `key=jax.random.key(0)`."
                )
            if solver.split_complex:
                raise ValueError(
                    "ContinuousHEP with neuron noise integrates the complex state "
                    "directly; use `holoode.SteadyStateODE(split_complex=False)`."
                )
            unused = {
                name: getattr(solver, name)
                for name in ("rtol", "atol", "stepsize_controller", "dt0")
                if getattr(solver, name) is not None
            }
            if unused:
                raise ValueError(
                    "ContinuousHEP with neuron noise integrates by Euler–Maruyama "
                    "with the fixed step `noise.dt`, so the solver settings "
                    f"{unused} cannot be honoured: leave them at `None` (set the "
                    "step with `holoode.NeuronNoise(dt=...)`)."
                )
            key, key_half = jr.split(key)
        else:
            key_half = None
        model = stop_gradient(model)
        params, _ = parameters(model)
        rdtype = real_dtype(tree_dtype(params))
        period = self.period.astype(rdtype)
        signal, u_end, steps, result, drift = self._run(
            model, x, y, cost, solver, period, key
        )
        grads = jtu.tree_map(lambda s, p: jnp.real(s).astype(p.dtype), signal, params)
        if self.richardson:
            # Bias c/T² + O(1/T⁴): combine periods T and T/2 to cancel the c/T² term.
            half, _, steps_half, result_half, drift_half = self._run(
                model, x, y, cost, solver, period / 2, key_half
            )
            coarse = jtu.tree_map(
                lambda s, p: jnp.real(s).astype(p.dtype), half, params
            )
            fine = grads
            grads = jtu.tree_map(lambda a, b: (4 * a - b) / 3, fine, coarse)
            # Conservative: the size of the removed correction (the bias of the
            # period-T estimate), not the smaller remaining error.
            error_estimate = tree_norm(
                jtu.tree_map(lambda a, b: (a - b) / 3, fine, coarse)
            ) / tree_norm(grads)
            drift = jnp.maximum(drift, drift_half)
            steps = steps + steps_half
            result = first_failure(result, result_half)
        else:
            # Lagging by a phase δ turns the estimate into ≈ g e^{−iδ}: the
            # imaginary part measures δ and the real part is biased by ≈ δ²/2.
            lag = tree_norm(jtu.tree_map(jnp.imag, signal)) / tree_norm(grads)
            error_estimate = 0.5 * lag**2
        error_estimate = jnp.maximum(error_estimate, drift)
        omega = 2 * jnp.pi / period
        t_end = (self.warmup + self.num_periods) * period
        cdtype = jtu.tree_leaves(u_end)[0].dtype
        beta_end = (self.beta * jnp.exp(1j * omega * t_end)).astype(cdtype)
        residual = jax.vmap(
            lambda u_b, x_b, y_b: optx.rms_norm(
                model.vector_field(u_b, x_b, y_b, beta_end, cost)
            )
        )(u_end, x, y)
        batch = x.shape[0]
        run_info = Equilibrium(
            value=u_end,
            num_steps=jnp.full((batch,), steps),
            residual=residual,
            result=jax.vmap(lambda _: result)(jnp.arange(batch)),
        )
        # The loss at the state the network reached, with the teaching signal's
        # imaginary part dropped: no free phase is ever run.
        loss = free_loss(model, jtu.tree_map(jnp.real, u_end), x, y, cost)
        info = Info.from_equilibria(
            loss, [run_info], grads, error_estimate=error_estimate
        )
        # A large lag makes the estimate wrong while every solve succeeded: the
        # period is too short for the network, and the caller must be told.
        lagging = (info.result == RESULTS.successful) & (
            error_estimate > self.max_error_estimate
        )
        result = RESULTS.where(lagging, RESULTS.period_too_short, info.result)
        return grads, eqx.tree_at(lambda i: i.result, info, result)

    def _run(self, model, x, y, cost, solver, period, key):
        """One run from `init_state`: warm-up, then `num_periods` periods of
        `num_samples` segments, the signal added to the accumulator after each.
        Returns the complex mean signal, the final state, the step count, a result
        code and the drift (see the class docstring)."""
        params, static = parameters(model)
        rdtype = real_dtype(tree_dtype(params))
        cdtype = complex_dtype(rdtype)
        # The parameters cast to complex once, not at every sample of the run
        # (`learning_signal` casts them to the states' dtype).
        model_c = eqx.combine(tree_astype(params, cdtype), static)
        beta = self.beta.astype(rdtype)
        omega = 2 * jnp.pi / period
        driven = _Driven(
            model=model,
            x=x,
            y=y,
            cost=cost,
            beta=beta,
            omega=omega,
            split_state=solver.split_complex,
        )
        u0 = initial_states(model, x, cdtype)
        # The integrator: the user's, or with noise Euler–Maruyama at its step.
        ode = solver
        if self.noise is not None:
            fixed_step = dict(stepsize_controller=dfx.ConstantStepSize())
            ode = SteadyStateODE(dfx.Euler(), dt0=self.noise.dt, **fixed_step)
        controller = ode.controller(u0)
        integrator, dt0 = ode.solver, ode.dt0
        to_complex = merge if solver.split_complex else (lambda u: u)
        # Segment boundaries: [0, t_warm] (if any warm-up), then `num_samples`
        # segments per period. The signal is sampled at every boundary from t_warm
        # on, with trapezoidal weights: on the periodic part of the signal that is
        # the (spectrally accurate) rectangle rule, and on what is left of the
        # transient it is second-order accurate, where a rectangle rule would turn
        # a slow drift of the state into a first-order bias of the real part.
        num_samples = self.num_periods * self.num_samples
        t_warm = self.warmup * period
        h = period / self.num_samples
        ends = t_warm + h * jnp.arange(1, num_samples + 1, dtype=rdtype)
        weights = jnp.ones(num_samples, rdtype).at[-1].set(0.5)
        if self.warmup > 0:
            ends = jnp.concatenate([t_warm[None], ends])
            weights = jnp.concatenate([jnp.full((1,), 0.5, rdtype), weights])
        starts = jnp.concatenate([jnp.zeros((1,), rdtype), ends[:-1]])
        keys = None if key is None else jr.split(key, len(ends))
        # `max_steps` bounds the whole run; each segment is capped by it too, so a
        # run that exceeds it stops within one segment of the limit.
        budget = solver.max_steps
        fixed = self.noise is None and isinstance(controller, dfx.ConstantStepSize)
        if fixed and dt0 is None:
            raise ValueError(
                "ContinuousHEP: a `dfx.ConstantStepSize()` controller needs a step: "
                "pass `holoode.SteadyStateODE(..., dt0=0.5)` (or another step)."
            )

        def make_terms(state, key):
            terms = dfx.ODETerm(driven)
            if self.noise is None:
                return terms
            noise = self.noise.diffusion(state[0], None, None, key, extra=None)
            return dfx.MultiTerm(terms, noise)

        def sample(state, t):
            """The learning signal and the state's first harmonic at time `t`."""
            u = to_complex(state[0])
            phase = jnp.exp(-1j * omega * t).astype(cdtype)
            harmonic = jtu.tree_map(lambda a: a * phase, u)
            # `∂F/∂θ(u(t), β(t)) e^{−iωt} / |β|`, averaged over the batch (complex:
            # its imaginary part measures the lag).
            mean = jnp.full((x.shape[0],), 1 / x.shape[0], rdtype)
            signal = learning_signal(model_c, u, x, y, beta / phase, cost, mean)
            return jtu.tree_map(lambda s: s * phase / beta, signal), harmonic

        def solve(t0, t1, state, solver_state, controller_state, key):
            """Integrate `[t0, t1]`; returns the new states, steps and result."""
            terms = make_terms(state, key)
            if fixed:
                # Equal steps no longer than `dt0` (up to rounding), taken with the
                # solver's own `step`: a fixed-step run needs none of the adaptive
                # loop's bookkeeping, which costs as much as a cheap step.
                n = jnp.maximum(jnp.ceil((t1 - t0) / dt0 - 1e-3), 1).astype(int)
                dt = (t1 - t0) / n

                def step(i, c):
                    y, s, result = c
                    ta = t0 + i * dt
                    tb = jnp.where(i == n - 1, t1, ta + dt)
                    y, _, _, s, new = integrator.step(terms, ta, tb, y, None, s, False)
                    return y, s, first_failure(result, RESULTS.promote(new))

                # The step limit still applies: never run past it.
                within = RESULTS.where(
                    n <= budget, RESULTS.successful, RESULTS.max_steps_reached
                )
                state, solver_state, result = jax.lax.fori_loop(
                    0, jnp.minimum(n, budget), step, (state, solver_state, within)
                )
                return state, solver_state, controller_state, n, result
            # Never differentiated (the gradient is the accumulator). The solver
            # and controller states are carried over from the previous segment, so
            # that the solver continues (first-same-as-last stages, step size) as
            # if the run were one solve.
            sol = ode.integrate(
                terms,
                t0,
                t1,
                state,
                controller=controller,
                max_steps=budget,
                saveat=dfx.SaveAt(t1=True, solver_state=True, controller_state=True),
                solver_state=solver_state,
                controller_state=controller_state,
            )
            state = jtu.tree_map(lambda a: a[-1], sol.ys)
            steps = sol.stats["num_steps"]
            result = RESULTS.promote(sol.result)
            return state, sol.solver_state, sol.controller_state, steps, result

        def segment(carry, inputs):
            (
                state,
                solver_state,
                controller_state,
                accumulator,
                u_start,
                steps,
                result,
            ) = carry
            t0, t1, weight, key = inputs
            state, solver_state, controller_state, more_steps, new = solve(
                t0, t1, state, solver_state, controller_state, key
            )
            accumulator = jtu.tree_map(
                lambda a, s: a + weight * s, accumulator, sample(state, t1)
            )
            # The state where averaging starts: the end of the warm-up.
            u_start = jtu.tree_map(
                lambda a, b: jnp.where(t1 == t_warm, b, a),
                u_start,
                to_complex(state[0]),
            )
            carry = (
                state,
                solver_state,
                controller_state,
                accumulator,
                u_start,
                steps + more_steps,
                first_failure(result, new),
            )
            return carry, None

        state = (split(u0) if solver.split_complex else u0, None)
        # The states Diffrax would create at the start of a solve, made here so that
        # every segment, the first included, is the same compiled solve.
        terms = make_terms(state, None if keys is None else keys[0])
        with complex_checked():
            t_next, controller_state = controller.init(
                terms,
                starts[0],
                ends[0],
                state,
                dt0,
                None,
                integrator.func,
                integrator.error_order(terms),
            )
            solver_state = integrator.init(terms, starts[0], t_next, state, None)
        zeros = jtu.tree_map(jnp.zeros_like, sample(state, starts[0]))
        if self.warmup > 0:
            accumulator = zeros
        else:
            accumulator = jtu.tree_map(lambda s: s / 2, sample(state, starts[0]))
        carry = (
            state,
            solver_state,
            controller_state,
            accumulator,
            u0,
            jnp.array(0),
            RESULTS.successful,
        )
        carry, _ = jax.lax.scan(segment, carry, (starts, ends, weights, keys))
        state, _, _, accumulator, u_start, steps, result = carry
        signal, harmonic = jtu.tree_map(lambda a: a / num_samples, accumulator)
        u_end = to_complex(state[0])
        finite = tree_isfinite(u_end)
        result = first_failure(
            result,
            RESULTS.where(
                steps <= budget, RESULTS.successful, RESULTS.max_steps_reached
            ),
        )
        result = RESULTS.where(finite, result, RESULTS.nonfinite)
        # Settled onto its oscillation, the network returns to the same state after
        # whole periods. What it has not settled drifts; a drift `D` over the K
        # periods adds about `D / (2πK)` to the first harmonic of the state, which
        # the gradient is read from: relative to that harmonic, it is the error
        # that the lag estimate cannot see (a network that has barely moved lags
        # little, yet is far from equilibrium).
        drift = tree_norm(jtu.tree_map(jnp.subtract, u_end, u_start)) / (
            2 * jnp.pi * self.num_periods * tree_norm(harmonic)
        )
        return signal, u_end, steps, result, drift
