"""Extending holoode: your own learning rule and your own equilibrium solver.

Run with `python docs/tutorials/extending.py` (about a minute on a laptop
CPU, most of it compiling).
"""

import jax


jax.config.update("jax_enable_x64", True)  # float64: orders of accuracy are visible

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optax
from sklearn.datasets import load_digits

import holoode as ho


# --- 1. A learning rule: fourth-order finite-difference EP -----------------------
class FourthOrderEP(ho.AbstractLearningRule):
    """Classic EP with a fourth-order central difference in β:

    dL/dθ ≈ [8 (G(β) − G(−β)) − (G(2β) − G(−2β))] / (12 β),

    where G(β) = ∂F/∂θ at the equilibrium nudged by β. Its error falls like β⁴
    (symmetric EP, `holoode.ClassicEP(symmetric=True)`, like β²)."""

    # An array field, not a float: a new β is then new data, not a recompile.
    beta: jax.Array = eqx.field(default=0.05, converter=jnp.asarray)

    def estimate(self, model, x, y, *, cost, solver, key):
        del key  # no randomness in this rule
        free = ho.solve_free(solver, model, x, y, cost, ho.initial_states(model, x))
        b = self.beta
        betas = jnp.array([b, -b, 2 * b, -2 * b])
        nudged = ho.solve_points(
            solver, model, x, y, cost, betas, free.value, chain=False
        )
        # Σ_k w_k G(β_k), averaged over the batch: one backward pass.
        batch = x.shape[0]
        w = jnp.array([8, -8, -1, 1]) / (12 * b)
        states = jtu.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), nudged.value)
        grads = ho.learning_signal(
            model,
            states,
            jnp.repeat(x, 4, axis=0),
            jnp.repeat(y, 4, axis=0),
            jnp.tile(betas, batch),
            cost,
            jnp.tile(w, batch) / batch,
        )
        loss = jnp.mean(
            jax.vmap(lambda u, a, c: model.loss(u, a, c, cost))(free.value, x, y)
        )
        return grads, ho.Info.from_equilibria(loss, [free, nudged], grads)


# --- 2. An equilibrium solver: plain relaxation in a compiled loop ---------------
class Relaxation(ho.AbstractEquilibriumSolver):
    """Iterate u ← u + η f(u) until the RMS of the field f(u) falls below
    `atol + rtol · RMS(u)` (a residual test: simple, but blind to slow
    contraction; `holoode.FixedPointIteration` bounds the distance instead)."""

    step_size: float = 0.5
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 20_000

    def solve(self, vector_field, u0, *, differentiable):
        if differentiable:
            raise ValueError("Relaxation cannot be differentiated through its loop.")
        rtol, atol = self.tolerances(u0)

        def rms(tree):
            leaves = jtu.tree_leaves(tree)
            total = sum(jnp.sum(jnp.abs(a) ** 2) for a in leaves)
            return jnp.sqrt(total / sum(a.size for a in leaves))

        def unfinished(carry):
            steps, u, f = carry
            return (steps < self.max_steps) & (rms(f) > atol + rtol * rms(u))

        def step(carry):
            steps, u, f = carry
            u = jtu.tree_map(lambda a, b: a + self.step_size * b, u, f)
            return steps + 1, u, vector_field(u)

        steps, u, f = jax.lax.while_loop(unfinished, step, (0, u0, vector_field(u0)))
        done = rms(f) <= atol + rtol * rms(u)
        result = ho.RESULTS.where(
            done, ho.RESULTS.successful, ho.RESULTS.max_steps_reached
        )
        return ho.Equilibrium(value=u, num_steps=steps, residual=rms(f), result=result)


# --- 3. Both at work, against the exact gradient ---------------------------------
digits = load_digits()
x = jnp.asarray(digits.data[:16] / 16.0)
y = jnp.asarray(digits.target[:16])
cost = ho.CrossEntropy()
model = ho.nn.HopfieldMLP((64, 32, 10), key=jr.key(0), dtype=jnp.float64)
solver = ho.RootFind(rtol=1e-13, atol=1e-13)
exact, _ = ho.gradient(
    ho.ImplicitDifferentiation(), model, x, y, cost=cost, solver=solver
)


def relative_error(grads):
    diff = jtu.tree_map(jnp.subtract, grads, exact)
    return float(optax.tree_utils.tree_norm(diff) / optax.tree_utils.tree_norm(exact))


print(f"{'beta':>6s} {'symmetric EP':>13s} {'fourth order':>13s}")
betas = [0.4, 0.2, 0.1]
errors = {"symmetric EP": [], "fourth order": []}
for b in betas:
    rules = {
        "symmetric EP": ho.ClassicEP(beta=b, symmetric=True),
        "fourth order": FourthOrderEP(beta=b),
    }
    for name, rule in rules.items():
        grads, info = ho.gradient(rule, model, x, y, cost=cost, solver=solver)
        errors[name].append(relative_error(grads))
    sym, fourth = errors["symmetric EP"][-1], errors["fourth order"][-1]
    print(f"{b:6.2f} {sym:13.2e} {fourth:13.2e}")

# The fitted order of each rule: the slope of log(error) against log(β).
orders = {k: np.polyfit(np.log(betas), np.log(v), 1)[0] for k, v in errors.items()}
print("fitted orders:", {k: round(float(v), 2) for k, v in orders.items()})
assert 1.7 < orders["symmetric EP"] < 2.3 and 3.5 < orders["fourth order"] < 4.5

# The new solver plugs into every rule, here holomorphic EP.
grads, info = ho.gradient(
    ho.HolomorphicEP(beta=0.2, num_points=6),
    model,
    x,
    y,
    cost=cost,
    solver=Relaxation(rtol=1e-11, atol=1e-11),
)
print(
    f"holomorphic EP with Relaxation: error {relative_error(grads):.1e}, "
    f"{int(info.num_steps.max())} steps at most, "
    f"successful: {bool(info.result == ho.RESULTS.successful)}"
)
assert relative_error(grads) < 1e-6
