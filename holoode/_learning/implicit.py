"""The backpropagation reference: implicit differentiation at the free equilibrium."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx

from .._equilibrium.batched import initial_states, solve_free
from .._misc import default_tolerance, real_dtype, stop_gradient, tree_dtype
from .._model import parameters
from .._solution import Info, RESULTS
from .base import AbstractLearningRule, free_loss


class ImplicitDifferentiation(AbstractLearningRule):
    """The exact gradient of the loss at the free equilibrium (backpropagation).

    With `r(u, θ)` the network's vector field at `β = 0` and `u*` its zero, the
    implicit function theorem gives `du*/dθ = −(∂r/∂u)⁻¹ ∂r/∂θ`, so
    `dL/dθ = ∂C/∂θ − λᵀ ∂r/∂θ` with the adjoint state `λ` solving
    `(∂r/∂u)ᵀ λ = ∂C/∂u`. One linear solve per example; no nudged phase. This is
    the reference every other rule is compared with. It is exact up to the
    equilibrium tolerance and the linear solver's tolerance.

    **Arguments:**

    - `linear_solver`: a Lineax solver for the adjoint system (default
      `lx.GMRES` at the state dtype's default tolerance; `lx.LU()` materialises the
      Jacobian and solves it directly, which is best for small states).
    """

    linear_solver: lx.AbstractLinearSolver | None = None

    def estimate(self, model, x, y, *, cost, solver, key):
        del key
        params, static = parameters(model)
        dtype = real_dtype(tree_dtype(params))
        model_ng = stop_gradient(model)
        free = solve_free(
            solver, model_ng, x, y, cost, initial_states(model_ng, x, dtype)
        )
        free = stop_gradient(free)
        tol = default_tolerance(dtype)
        linear_solver = (
            lx.GMRES(rtol=tol, atol=tol, restart=50, max_steps=1000)
            if self.linear_solver is None
            else self.linear_solver
        )

        def adjoint(u, x_b, y_b):
            field = lambda v: model_ng.vector_field(v, x_b, y_b, 0.0, cost)  # noqa: E731
            dl_du = jax.grad(lambda v: model_ng.loss(v, x_b, y_b, cost))(u)
            _, vjp = jax.vjp(field, u)
            operator = lx.FunctionLinearOperator(
                lambda lam: vjp(lam)[0], jax.eval_shape(lambda: u)
            )
            sol = lx.linear_solve(operator, dl_du, linear_solver, throw=False)
            return sol.value, sol.result == lx.RESULTS.successful

        lam, adjoint_ok = jax.vmap(adjoint)(free.value, x, y)

        def lagrangian(p):
            m = eqx.combine(p, static)

            def per_example(u, l, x_b, y_b):
                r = m.vector_field(u, x_b, y_b, 0.0, cost)
                inner = sum(
                    jnp.sum(a * b)
                    for a, b in zip(jtu.tree_leaves(l), jtu.tree_leaves(r))
                )
                return m.loss(u, x_b, y_b, cost) - inner

            return jnp.mean(jax.vmap(per_example)(free.value, lam, x, y))

        adjoint_ok = jnp.all(adjoint_ok)
        # A gradient from an unconverged adjoint is NaN, never silently wrong.
        grads = jtu.tree_map(
            lambda g: jnp.where(adjoint_ok, g, jnp.nan), jax.grad(lagrangian)(params)
        )
        loss = free_loss(model_ng, free.value, x, y, cost)
        info = Info.from_equilibria(loss, [free], grads)
        # ... and reported with its cause, unless the equilibrium itself failed
        # (which makes the adjoint system meaningless, and is said first).
        named = ~adjoint_ok & (info.result == RESULTS.nonfinite_gradient)
        result = RESULTS.where(named, RESULTS.adjoint_failed, info.result)
        return grads, eqx.tree_at(lambda i: i.result, info, result)
