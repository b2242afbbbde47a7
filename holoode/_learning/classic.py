"""Classic equilibrium propagation (finite differences in β)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .._equilibrium.batched import initial_states, solve_free, solve_points
from .._misc import real_dtype, stop_gradient, tree_dtype
from .._model import parameters
from .._noise import NeuronNoise
from .._solution import Info
from .base import (
    AbstractLearningRule,
    add_noise,
    as_beta,
    concrete,
    free_loss,
    weighted_signal,
)


def _as_bool(value):
    """NumPy booleans (e.g. from a config array) as Python ones: a NumPy scalar in a
    module would be traced by `jit` and break the `if` that picks the estimate."""
    return bool(value) if isinstance(value, np.bool_) else value


class ClassicEP(AbstractLearningRule):
    """Equilibrium propagation with real nudging (Scellier & Bengio, 2017).

    One-sided: `dL/dθ ≈ (∂F/∂θ(u*_β) − ∂F/∂θ(u*_0)) / β`, error `O(β)`.
    Symmetric (Laborieux et al., 2021): `(∂F/∂θ(u*_β) − ∂F/∂θ(u*_{−β})) / (2β)`,
    error `O(β²)`. Both are biased for every finite β; `holoode.HolomorphicEP`
    removes the bias. Nudged phases start from the free equilibrium.

    **Arguments:**

    - `beta`: the nudging strength (non-zero, may be negative).
    - `symmetric`: use the two-sided estimate.
    - `noise`: a `holoode.NeuronNoise`; the learning signal at each phase is then
      averaged over noisy snapshots (pass `key` to `holoode.gradient`).
    """

    beta: jax.Array = eqx.field(default=0.1, converter=as_beta)
    symmetric: bool = eqx.field(default=False, converter=_as_bool)
    noise: NeuronNoise | None = None

    def __check_init__(self):
        beta = concrete(self.beta)
        if beta is not None and (beta == 0 or not math.isfinite(beta)):
            raise ValueError(
                "ClassicEP(beta=...) needs a finite, non-zero real number, got "
                f"{beta!r}. Fix: e.g. `ClassicEP(beta=0.1)`."
            )
        if not isinstance(self.symmetric, bool):
            raise ValueError(
                "ClassicEP(symmetric=...) must be True or False, got "
                f"{self.symmetric!r}."
            )
        if self.noise is not None and not isinstance(self.noise, NeuronNoise):
            raise ValueError(
                "ClassicEP(noise=...) must be a `holoode.NeuronNoise` or None, got "
                f"{type(self.noise).__name__}."
            )

    def estimate(self, model, x, y, *, cost, solver, key):
        model = stop_gradient(model)
        params, _ = parameters(model)
        dtype = real_dtype(tree_dtype(params))
        free = solve_free(solver, model, x, y, cost, initial_states(model, x, dtype))
        b = self.beta
        if self.symmetric:
            betas = jnp.array([b, -b], dtype)
            weights = jnp.array([[1 / (2 * b), -1 / (2 * b)]], dtype)
        else:
            betas = jnp.array([b], dtype)
            weights = jnp.array([[-1 / b, 1 / b]], dtype)
        nudged = solve_points(solver, model, x, y, cost, betas, free.value, chain=False)
        if self.symmetric:
            states, all_betas = nudged.value, betas
        else:
            states = jtu.tree_map(
                lambda f, n: jnp.concatenate([f[:, None], n], axis=1),
                free.value,
                nudged.value,
            )
            all_betas = jnp.concatenate([jnp.zeros((1,), dtype), betas])
        states, all_betas, weights, finite = add_noise(
            self.noise, model, x, y, cost, all_betas, states, weights, key
        )
        signal = weighted_signal(model, states, x, y, cost, all_betas, weights)
        grads = jtu.tree_map(lambda s: s[0], signal)
        loss = free_loss(model, free.value, x, y, cost)
        return grads, Info.from_equilibria(loss, [free, nudged], grads, finite=finite)
