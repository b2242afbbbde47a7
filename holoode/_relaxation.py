"""The relaxation time of a network: the time scale that continuous-time rules must
be slow against."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike

from ._costs import AbstractCost
from ._equilibrium import AbstractEquilibriumSolver, SteadyStateODE
from ._equilibrium.batched import initial_states, solve_batch
from ._model import AbstractEquilibriumModel
from ._solution import RESULTS


def relaxation_time(
    model: AbstractEquilibriumModel,
    x: Array,
    y: ArrayLike,
    *,
    cost: AbstractCost,
    solver: AbstractEquilibriumSolver | None = None,
) -> Array:
    """The slowest time constant of the free dynamics, per example.

    At the free equilibrium `u*` the dynamics linearise to `dδ/dt = J δ` with
    `J = ∂f/∂u(u*, β = 0)`; perturbations decay like `e^{λ t}` over the
    eigenvalues `λ` of `J`, so the slowest one sets

        τ = 1 / min_λ |Re λ|.

    This is the scale that `holoode.ContinuousHEP`'s period must exceed: its lag
    bias falls like `(τ / T)²` (see `holoode.ContinuousHEP`; with
    `T = 100 τ` and `richardson=True` the error is below 1e-3 in
    `tests/test_continuous.py`), and the time `holoode.online_plasticity` needs per
    example.

    **Arguments:** `model`, a batch `x`, `y` (leading batch axis), the `cost`, and
    the equilibrium `solver` (default `holoode.SteadyStateODE()`).

    **Returns:** an array of shape `(batch,)`, in the dynamics' time units.

    **Caveats:** the Jacobian is dense (`n × n` for `n` state entries, eigenvalues
    in `O(n³)`): meant for networks up to a few thousand neurons. An equilibrium
    that is not reached raises `RuntimeError`; a `τ` of `inf` means a marginally
    stable direction (an eigenvalue on the imaginary axis). At an unstable
    equilibrium (some `Re λ > 0`, which a root finder can converge to) the number
    is not a relaxation time: run the dynamics (`holoode.SteadyStateODE`) to find
    the equilibrium the network settles in.
    """
    solver = SteadyStateODE() if solver is None else solver
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.ndim < 1 or y.shape[:1] != x.shape[:1]:
        raise ValueError(
            "holoode.relaxation_time expects a batch: x and y with the same leading "
            f"axis, got x {x.shape} and y {y.shape}; use x[None], y[None] for one "
            "example."
        )
    return _relaxation_time(model, x, y, cost, solver)


@eqx.filter_jit
def _relaxation_time(model, x, y, cost, solver):
    u0 = initial_states(model, x, x.dtype)
    free = solve_batch(solver, model, x, y, cost, 0.0, u0)

    def tau(u, x_b, y_b):
        flat, unravel = ravel_pytree(u)

        def field(v):
            return ravel_pytree(model.vector_field(unravel(v), x_b, y_b, 0.0, cost))[0]

        eigenvalues = jnp.linalg.eigvals(jax.jacfwd(field)(flat))
        return 1 / jnp.min(jnp.abs(jnp.real(eigenvalues)))

    taus = jax.vmap(tau)(free.value, x, y)
    reached = jnp.all(free.result == RESULTS.successful)
    return eqx.error_if(
        taus,
        ~reached,
        "holoode.relaxation_time: the free equilibrium was not reached for every "
        "example; pass a solver with more steps or looser tolerances.",
    )
