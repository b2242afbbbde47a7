"""Online plasticity: neurons and synapses evolve in one continuous-time ODE."""

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx
from jax.core import Tracer
from jaxtyping import Array, PyTree

from ._costs import AbstractCost
from ._equilibrium.ode import SteadyStateODE
from ._misc import complex_dtype, real_dtype, tree_astype, tree_dtype
from ._model import AbstractEquilibriumModel, learning_signal, parameters
from ._solution import RESULTS


class _Plastic(eqx.Module):
    """`(du/dt, dθ/dt)` with the example `k = ⌊t / duration⌋` clamped as input."""

    static: PyTree
    x: Array
    y: Array
    cost: AbstractCost
    beta: Array
    omega: Array
    duration: Array
    learning_rate: Array

    def __call__(self, t, state, args):
        del args
        u, theta = state
        k = jnp.clip(jnp.floor(t / self.duration).astype(int), 0, self.x.shape[0] - 1)
        x, y = self.x[k], self.y[k]
        phase = jnp.exp(1j * self.omega * t).astype(tree_dtype(u))
        beta_t = self.beta * phase
        model = eqx.combine(theta, self.static)
        du = model.vector_field(u, x, y, beta_t, self.cost)
        one = jtu.tree_map(lambda a: a[None], (u, x, y))
        signal = learning_signal(
            model, *one, beta_t, self.cost, jnp.ones((1,), self.beta.dtype)
        )
        # dθ/dt = −η Re[∂F/∂θ e^{−iωt}] / |β|; θ stays real (stored as complex
        # because Diffrax integrates one dtype per state).
        dtheta = jtu.tree_map(
            lambda s: (
                -self.learning_rate * jnp.real(s * jnp.conj(phase)) / self.beta
            ).astype(s.dtype),
            signal,
        )
        return du, dtheta


def online_plasticity(
    model: AbstractEquilibriumModel,
    x: Array,
    y: Array,
    *,
    cost: AbstractCost,
    beta: float = 0.5,
    period: float = 20.0,
    periods_per_example: int = 1,
    learning_rate: float = 0.05,
    solver: dfx.AbstractSolver = dfx.Tsit5(),
    rtol: float = 1e-4,
    atol: float = 1e-6,
    max_steps: int | None = None,
    throw: bool = True,
) -> tuple[AbstractEquilibriumModel, RESULTS]:
    """Learn in continuous time with no phases: the parameters evolve with the
    neurons, in the same ODE, while the examples are presented one after another.

    The teaching signal rotates, `β(t) = |β| e^{iωt}`; example `k` is clamped as
    input during `[k D, (k+1) D)`, `D = periods_per_example · period`, without
    resetting the neurons. The synapses follow the online holomorphic EP rule

        dθ/dt = −η Re[∂F/∂θ(u(t), β(t)) e^{−iωt}] / |β|,

    whose average over a period is `−η` times the loss gradient of the current
    example (up to the lag of the neurons; see `holoode.ContinuousHEP`). This is
    "learning in a physical system": one `diffeqsolve` from the first example to
    the last; the switch times are passed to the step-size controller as jumps.

    Caveat: with one period per example the neurons never settle fully, and the
    first part of every period is spent following the new input; longer periods
    (relative to the relaxation time) give more faithful gradients.

    **Arguments:**

    - `model`: the initial network; `x`, `y`: the examples in presentation order
      (leading axis), e.g. an epoch of a shuffled training set.
    - `cost`, `beta`, `period`, `periods_per_example`: the teaching signal.
    - `learning_rate`: `η`, per unit time. `η · period · periods_per_example` is
      the step an SGD learning rate would take per example.
    - `solver`, `rtol`, `atol`, `max_steps`: the Diffrax integration.
    - `throw`: raise if the integration failed (too many steps: usually a learning
      rate so large that the weights, and with them the dynamics, blow up).

    **Returns:** `(model, result)`: the trained model and the integration's result
    (`holoode.RESULTS`, Diffrax's cause kept).
    """
    params, static = parameters(model)
    rdtype = real_dtype(tree_dtype(params))
    cdtype = complex_dtype(rdtype)
    # β and the rate may be traced (a training step passes them as arrays).
    positive = [v > 0 for v in (beta, learning_rate) if not isinstance(v, Tracer)]
    if not (all(positive) and period > 0 and periods_per_example >= 1):
        raise ValueError(
            "online_plasticity needs beta > 0, period > 0, learning_rate > 0 and "
            f"periods_per_example ≥ 1; got beta={beta}, period={period}, "
            f"learning_rate={learning_rate}, periods_per_example={periods_per_example}."
        )
    x = jnp.asarray(x, rdtype)
    n = x.shape[0]
    duration = periods_per_example * period
    field = _Plastic(
        static=static,
        x=x,
        y=jnp.asarray(y),
        cost=cost,
        beta=jnp.asarray(beta, rdtype),
        omega=jnp.asarray(2 * jnp.pi / period, rdtype),
        duration=jnp.asarray(duration, rdtype),
        learning_rate=jnp.asarray(learning_rate, rdtype),
    )
    u0 = tree_astype(model.init_state(x[0]), cdtype)
    y0 = (u0, tree_astype(params, cdtype))
    switches = duration * jnp.arange(1, n, dtype=rdtype)
    steps = 400 * n * periods_per_example if max_steps is None else max_steps
    ode = SteadyStateODE(solver, rtol, atol, max_steps=steps)
    # The example switches are jumps of the input: the controller steps onto them.
    controller = dfx.PIDController(
        rtol=rtol, atol=atol, norm=optx.rms_norm, jump_ts=switches
    )
    sol = ode.integrate(
        dfx.ODETerm(field),
        0.0,
        float(n * duration),
        y0,
        controller=controller,
        saveat=dfx.SaveAt(t1=True),
    )
    theta = jtu.tree_map(
        lambda a, p: jnp.real(a[-1]).astype(p.dtype), sol.ys[1], params
    )
    result = RESULTS.promote(sol.result)
    if throw and sol.result != dfx.RESULTS.successful:
        raise RuntimeError(
            f"online_plasticity: the integration failed ({result}). The weights "
            "probably grew until the dynamics became stiff or diverged: lower "
            "`learning_rate`, or raise `max_steps`."
        )
    return eqx.combine(theta, static), result
