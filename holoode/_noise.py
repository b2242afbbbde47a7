"""Neuron noise: additive white noise on the state, as a Diffrax SDE."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, PRNGKeyArray, PyTree

from ._equilibrium.ode import SteadyStateODE
from ._misc import real_dtype, tree_isfinite


class NeuronNoise(eqx.Module):
    """Additive noise on every neuron: `du = f(u, β) dt + std · dW`.

    The noise is real (a real Brownian motion added to real and complex states
    alike, as in Laborieux & Zenke, 2022). An equilibrium rule with noise first
    finds the noise-free equilibrium (a shortcut for the relaxation), then runs the
    noisy dynamics from it for `duration` time units with Euler–Maruyama steps of
    `dt`, and **averages the learning signal over `samples` equally spaced
    snapshots** of that window: this time average is what reduces the variance
    (more samples or a longer window: less variance; the correlation time of the
    fluctuations is the network's relaxation time, so snapshots closer than that
    add little). `holoode.ContinuousHEP` integrates its signal over the whole noisy
    run instead.

    **Arguments:**

    - `std`: the noise intensity `σ ≥ 0` (per unit time: `Var[u]` grows like `σ² t`
      before the dynamics pull it back).
    - `duration`: the averaging window per equilibrium.
    - `samples`: snapshots averaged in that window.
    - `dt`: the Euler–Maruyama step.
    """

    std: float
    duration: float = 10.0
    samples: int = 10
    dt: float = 0.1

    def __check_init__(self):
        if not self.std >= 0:
            raise ValueError(f"NeuronNoise(std=...) must be ≥ 0, got {self.std!r}.")
        if not (self.duration > 0 and self.dt > 0 and self.dt <= self.duration):
            raise ValueError(
                "NeuronNoise needs 0 < dt ≤ duration, got "
                f"dt={self.dt!r}, duration={self.duration!r}."
            )
        if not (isinstance(self.samples, int) and self.samples >= 1):
            raise ValueError(
                f"NeuronNoise(samples=...) must be ≥ 1, got {self.samples!r}."
            )

    def diffusion(self, u: PyTree, t0, t1, key: PRNGKeyArray, extra: PyTree = None):
        """The SDE's noise term for states shaped like `u` (and zero noise on the
        `extra` part of an augmented state), for a run over `[t0, t1]` with fixed
        steps `dt` (the Brownian increments are drawn per step, so `t0` and `t1`
        do not enter)."""
        shapes = jtu.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, real_dtype(a.dtype)), (u, extra)
        )
        # Fresh Gaussian increments per step: exact for Euler–Maruyama with the
        # fixed step `dt`, and nothing is differentiated through a noisy run (the
        # learning signals are read off its states). A `VirtualBrownianTree` would
        # also allow adaptive steps and reverse-mode adjoints, at ~40× the cost.
        del t0, t1
        brownian = dfx.UnsafeBrownianPath(shape=shapes, key=key)
        diagonal = (
            jtu.tree_map(lambda a: jnp.full(a.shape, self.std, real_dtype(a.dtype)), u),
            jtu.tree_map(lambda a: jnp.zeros(a.shape, real_dtype(a.dtype)), extra),
        )
        return dfx.ControlTerm(
            lambda t, y, args: lx.DiagonalLinearOperator(diagonal), brownian
        )

    def sample(
        self, vector_field, u0: PyTree, key: PRNGKeyArray
    ) -> tuple[PyTree, Array]:
        """`samples` snapshots of the noisy dynamics started at `u0` (leading axis),
        and whether they stayed finite."""
        terms = dfx.MultiTerm(
            dfx.ODETerm(lambda t, y, args: (vector_field(y[0]), None)),
            self.diffusion(u0, 0.0, self.duration, key),
        )
        ts = jnp.linspace(self.duration / self.samples, self.duration, self.samples)
        euler_maruyama = SteadyStateODE(
            dfx.Euler(),
            stepsize_controller=dfx.ConstantStepSize(),
            dt0=self.dt,
            max_steps=int(self.duration / self.dt) + 2,
        )
        sol = euler_maruyama.integrate(
            terms, 0.0, self.duration, (u0, None), saveat=dfx.SaveAt(ts=ts)
        )
        states = sol.ys[0]
        finite = tree_isfinite(states) & (sol.result == dfx.RESULTS.successful)
        return states, finite


def sample_points(noise, model, x, y, cost, betas, states, key):
    """Noisy snapshots around equilibria shaped `(batch, points, ...)` at `betas`
    shaped `(points,)` or `(batch, points)`: returns states shaped
    `(batch, points · samples, ...)`, the matching β per column (shaped like
    `betas`) and whether every run stayed finite, per example."""
    batch, points = x.shape[0], betas.shape[-1]
    keys = jr.split(key, batch * points).reshape(batch, points)

    def one(u, x_b, y_b, beta, k):
        field = eqx.Partial(model.vector_field, x=x_b, y=y_b, beta=beta, cost=cost)
        return noise.sample(field, u, k)

    per_point = jax.vmap(one, in_axes=(0, None, None, 0, 0))
    samples, finite = jax.vmap(per_point)(
        states, x, y, jnp.broadcast_to(betas, (batch, points)), keys
    )
    m = noise.samples
    samples = jtu.tree_map(
        lambda a: a.reshape(batch, points * m, *a.shape[3:]), samples
    )
    return samples, jnp.repeat(betas, m, axis=-1), jnp.all(finite, axis=1)
