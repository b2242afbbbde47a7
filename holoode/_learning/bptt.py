"""Backpropagation through the iterations of the equilibrium solver."""

import equinox as eqx
import jax

from .._equilibrium.batched import initial_states, solve_batch
from .._misc import real_dtype, stop_gradient, tree_dtype
from .._model import parameters
from .._solution import Info
from .base import AbstractLearningRule, free_loss


class BackpropThroughTime(AbstractLearningRule):
    """Differentiate the loss through every step of the free-phase solve.

    Reverse-mode automatic differentiation through the solver's loop (Diffrax's or
    Optimistix's recursive checkpointing), from `init_state` to the equilibrium:
    the classic BPTT baseline of EP papers, here through the actual ODE or
    root-find iterations rather than a fixed number of steps. It agrees with
    `holoode.ImplicitDifferentiation` once the solve has converged; its memory
    grows with the number of steps (logarithmically with checkpointing).
    """

    def estimate(self, model, x, y, *, cost, solver, key):
        del key
        params, static = parameters(model)
        dtype = real_dtype(tree_dtype(params))
        u0 = initial_states(stop_gradient(model), x, dtype)

        def loss_fn(p):
            m = eqx.combine(p, static)
            sol = solve_batch(solver, m, x, y, cost, 0.0, u0, differentiable=True)
            return free_loss(m, sol.value, x, y, cost), sol

        (loss, sol), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        sol = stop_gradient(sol)
        return grads, Info.from_equilibria(loss, [sol], grads)
