"""Continuous-time holomorphic EP: one run, a rotating teaching signal."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu

from .._equilibrium import SteadyStateODE
from .._equilibrium.base import complex_checked, merge, split
from .._misc import (
    complex_dtype,
    real_dtype,
    stop_gradient,
    tree_astype,
    tree_dtype,
    tree_isfinite,
    tree_norm,
    tree_rms,
)
from .._model import holomorphic_grad
from .._noise import NeuronNoise
from .._solution import Equilibrium, RESULTS
from .base import (
    AbstractLearningRule,
    as_beta,
    concrete,
    free_loss,
    initial_states,
    make_info,
    parameters,
)


class _Driven(eqx.Module):
    """The batch's dynamics under `β(t) = |β| e^{iωt}`, optionally with the online
    learning signal `Re[∂F/∂θ e^{−iωt}] / (|β| T)` appended to the state."""

    model: eqx.Module
    params_c: eqx.Module
    x: jax.Array
    y: jax.Array
    cost: eqx.Module
    beta: jax.Array
    omega: float
    scale: jax.Array  # 1 / (|β| T): turns the integral into the time average
    split_state: bool

    def __call__(self, t, state, args):
        del args
        u = merge(state[0]) if self.split_state else state[0]
        phase = jnp.exp(1j * self.omega * t).astype(self.beta_dtype)
        beta_t = self.beta * phase
        du = jax.vmap(
            lambda u_b, x_b, y_b: self.model.vector_field(
                u_b, x_b, y_b, beta_t, self.cost
            )
        )(u, self.x, self.y)
        du = split(du) if self.split_state else du
        if state[1] is None:
            return (du, None)
        _, static = parameters(self.model)

        def batch_energy(p):
            m = eqx.combine(p, static)
            energies = jax.vmap(
                lambda u_b, x_b, y_b: m.parameter_energy(
                    u_b, x_b, y_b, beta_t, self.cost
                )
            )(u, self.x, self.y)
            return jnp.mean(energies)

        signal = holomorphic_grad(batch_energy, self.params_c)
        # The accumulator is complex (Diffrax's Runge–Kutta stages need one dtype
        # for the whole state); its imaginary part is the first-order lag.
        dg = jtu.tree_map(lambda s: s * jnp.conj(phase) * self.scale, signal)
        dg = split(dg) if self.split_state else dg
        return du, dg

    @property
    def beta_dtype(self):
        return complex_dtype(self.beta.dtype)


class ContinuousHEP(AbstractLearningRule):
    """Single-phase, continuous-time holomorphic EP (Laborieux & Zenke, 2022, §5).

    The network runs its own dynamics (`du/dt = f(u, β(t))`, the model's vector
    field) from `init_state`, while the teaching signal rotates,
    `β(t) = |β| e^{iωt}`, `ω = 2π / period`. The learning signal is integrated
    online, as part of the same ODE, over whole periods after a warm-up:

        g = (1 / (|β| K T)) ∫ Re[∂F/∂θ(u(t), β(t)) e^{−iωt}] dt,

    over `K` periods of length `T`.

    No free phase, no nudged phase, no stored states. If the network followed its
    quasi-static equilibrium `u*_{β(t)}` exactly, `g` would be the exact gradient
    (the first Fourier coefficient, as in `holoode.HolomorphicEP` with N → ∞). It
    lags by about `τ ω` (`τ`: relaxation time); the first-order lag is imaginary
    and drops out of the real part, so the bias falls like `(τ/T)²`. Choose the
    period well above the relaxation time, which `holoode.relaxation_time` measures
    (`tests/test_continuous.py` fits the error against the period: order 2, and
    order 4 with `richardson=True`, which reaches 1e-3 at `T = 100 τ` on a small
    MLP; `benchmarks/continuous.py` tabulates the error against `T` for a digits
    network). The default `period=100` suits networks with `τ` of a few time
    units, as the shifted-sigmoid `holoode.nn.HopfieldMLP` at initialisation;
    trained networks can relax more slowly (check `relaxation_time`).

    The integrator is the Diffrax solver of the `holoode.SteadyStateODE` passed as
    `solver` to `holoode.gradient` (default `dfx.Tsit5()`, and its
    `split_complex`); the step size is adaptive, with tolerances `rtol`/`atol`.

    **Arguments:**

    - `beta`: the amplitude `|β| > 0`.
    - `period`: the period `T > 0` of the oscillation, in the dynamics' time units.
    - `num_periods`: the number `K ≥ 1` of whole periods to average over.
    - `warmup`: time (in periods) run before averaging starts, so that the network
      has settled onto its oscillation (default 0.5).
    - `rtol`, `atol`: integration tolerances (`None`: 1e-8 in float64, 1e-5 in
      float32).
    - `max_steps`: at most this many integration steps per run.
    - `noise`: a `holoode.NeuronNoise` (its `std` and `dt`): the run is then an
      SDE, integrated by Euler–Maruyama with step `noise.dt`, and the accumulator
      averages the signal over the whole noisy run (needs `key`).
    - `richardson`: also run with period `T/2` and return `(4 g_T − g_{T/2}) / 3`,
      which cancels the `1/T²` bias (error `O(1/T⁴)`) for 1.5× the time. A
      correction beyond the paper; see the benchmark for its effect.

    `info.error_estimate` is `δ²/2`, with `δ = ‖Im‖/‖Re‖` the lag phase read off
    the imaginary part of the accumulated signal (a single-mode model of the lag;
    with `richardson=True`, the size of the removed correction — conservative).
    """

    beta: jax.Array = eqx.field(default=0.1, converter=as_beta)
    period: jax.Array = eqx.field(default=100.0, converter=as_beta)
    num_periods: int = 1
    warmup: float = 0.5
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 200_000
    richardson: bool = False
    noise: NeuronNoise | None = None

    def __check_init__(self):
        beta = concrete(self.beta)
        if beta is not None and not beta > 0:
            raise ValueError(
                "ContinuousHEP(beta=...) is the amplitude |β| and must be positive, "
                f"got {beta}."
            )
        period = concrete(self.period)
        if period is not None and not period > 0:
            raise ValueError(
                f"ContinuousHEP(period=...) must be a positive number, got {period}."
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
            key, key_half = jr.split(key)
        else:
            key_half = None
        model = stop_gradient(model)
        params, _ = parameters(model)
        rdtype = real_dtype(tree_dtype(params))
        period = self.period.astype(rdtype)
        signal, u_end, steps, result = self._run(model, x, y, cost, solver, period, key)
        grads = jtu.tree_map(lambda s, p: jnp.real(s).astype(p.dtype), signal, params)
        if self.richardson:
            # Bias c/T² + O(1/T⁴): combine periods T and T/2 to cancel the c/T² term.
            half, _, steps_half, result_half = self._run(
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
            steps = steps + steps_half
            result = RESULTS.where(result == RESULTS.successful, result_half, result)
        else:
            # Lagging by a phase δ turns the estimate into ≈ g e^{−iδ}: the
            # imaginary part measures δ and the real part is biased by ≈ δ²/2.
            lag = tree_norm(jtu.tree_map(jnp.imag, signal)) / tree_norm(grads)
            error_estimate = 0.5 * lag**2
        omega = 2 * jnp.pi / period
        t_end = (self.warmup + self.num_periods) * period
        cdtype = jtu.tree_leaves(u_end)[0].dtype
        beta_end = (self.beta * jnp.exp(1j * omega * t_end)).astype(cdtype)
        residual = jax.vmap(
            lambda u_b, x_b, y_b: tree_rms(
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
        return grads, make_info(loss, [run_info], grads, error_estimate=error_estimate)

    def _run(self, model, x, y, cost, solver, period, key):
        """One run from `init_state`: warm-up, then `num_periods` periods with the
        accumulator. Returns the complex accumulated signal, the final state, the
        step count and a result code."""
        params, _ = parameters(model)
        rdtype = real_dtype(tree_dtype(params))
        cdtype = complex_dtype(rdtype)
        default = 1e-8 if rdtype == jnp.float64 else 1e-5
        rtol = default if self.rtol is None else self.rtol
        atol = default if self.atol is None else self.atol
        beta = self.beta.astype(rdtype)
        driven = _Driven(
            model=model,
            params_c=tree_astype(params, cdtype),
            x=x,
            y=y,
            cost=cost,
            beta=beta,
            omega=2 * jnp.pi / period,
            scale=1.0 / (beta * self.num_periods * period),
            split_state=solver.split_complex,
        )
        controller = dfx.PIDController(rtol=rtol, atol=atol, norm=tree_rms)

        def run(t0, t1, state, key):
            if self.noise is None:
                terms, integrator, dt0 = dfx.ODETerm(driven), solver.solver, None
                stepping, max_steps = controller, self.max_steps
            else:
                noise = self.noise.diffusion(state[0], t0, t1, key, extra=state[1])
                terms, integrator = (
                    dfx.MultiTerm(dfx.ODETerm(driven), noise),
                    dfx.Euler(),
                )
                dt0, stepping = self.noise.dt, dfx.ConstantStepSize()
                max_steps = self.max_steps
            with complex_checked():
                sol = dfx.diffeqsolve(
                    terms,
                    integrator,
                    t0=t0,
                    t1=t1,
                    dt0=dt0,
                    y0=state,
                    stepsize_controller=stepping,
                    max_steps=max_steps,
                    saveat=dfx.SaveAt(t1=True),
                    # Never differentiated (the gradient is the accumulator): a plain
                    # while loop, no checkpointing; also what a noisy run requires.
                    adjoint=dfx.ForwardMode(),
                    throw=False,
                )
            ok = sol.result == dfx.RESULTS.successful
            return jtu.tree_map(lambda a: a[-1], sol.ys), sol.stats["num_steps"], ok

        u0 = initial_states(model, x, cdtype)
        state = (split(u0) if solver.split_complex else u0, None)
        keys = (None, None) if key is None else tuple(jr.split(key))
        t_warm = self.warmup * period
        t_end = t_warm + self.num_periods * period
        accumulator = jtu.tree_map(lambda p: jnp.zeros(p.shape, cdtype), params)
        accumulator = split(accumulator) if solver.split_complex else accumulator
        steps, ok = jnp.array(0), jnp.array(True)
        if self.warmup > 0:
            state, steps, ok = run(0.0, t_warm, state, keys[0])
        (u_end, signal), more_steps, more_ok = run(
            t_warm, t_end, (state[0], accumulator), keys[1]
        )
        if solver.split_complex:
            u_end, signal = merge(u_end), merge(signal)
        finite = tree_isfinite(u_end)
        result = RESULTS.where(
            finite,
            RESULTS.where(ok & more_ok, RESULTS.successful, RESULTS.max_steps_reached),
            RESULTS.nonfinite,
        )
        return signal, u_end, steps + more_steps, result
