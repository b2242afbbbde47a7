"""Diagnosing a failed equilibrium with the stability map.

Run with `python docs/tutorials/stability.py`; it writes `stability_map.png` to the
current folder.
"""

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import optax
from sklearn.datasets import load_digits

import holoode as ho


digits = load_digits()
x = jnp.asarray(digits.data[:8] / 16.0)
y = jnp.asarray(digits.target[:8])
cost = ho.CrossEntropy()
# Larger initial weights (gain 2) make the nudged equilibrium lose analyticity at a
# moderate |β|, which is what we want to diagnose.
model = ho.nn.HopfieldMLP((64, 32, 10), key=jr.key(0), gain=2.0, dtype=jnp.float64)
solver = ho.RootFind()  # Newton from the free equilibrium; see the caveat below


def relative_error(grads, reference):
    diff = jax.tree_util.tree_map(jnp.subtract, grads, reference)
    return float(
        optax.tree_utils.tree_norm(diff) / optax.tree_utils.tree_norm(reference)
    )


# --- 1. The symptom ------------------------------------------------------------
# With throw=True (the default) a failure raises with the cause and the fix; with
# throw=False (use it under jit, vmap and on GPUs) inspect info.result.
too_big = ho.HolomorphicEP(beta=4.0, num_points=8)
try:
    ho.gradient(too_big, model, x, y, cost=cost, solver=solver)
    raise AssertionError("expected a failure at |β| = 4")
except Exception as error:  # an Equinox runtime error, raised from inside jit
    cause = next(line for line in str(error).splitlines() if "failed:" in line)
    print("holoode.gradient raised:", cause[:120], "...")
grads, info = ho.gradient(too_big, model, x, y, cost=cost, solver=solver, throw=False)
print("info.result:", ho.RESULTS[info.result][:60], "...")
print("info.reached (all solves):", bool(info.all_reached))
print("info.radius_ratio (|β|/R per example):", jnp.round(info.radius_ratio, 2))
assert info.result != ho.RESULTS.successful

# --- 2. The map: where is the equilibrium reached, where is it analytic? ---------
# One example, a grid of complex β, every point solved from the free equilibrium
# in one vmap; reference circles give the radius R of the disc of analyticity.
result = ho.stability_map(
    model, x[0], y[0], cost=cost, betas=ho.beta_grid(5.0, 21), solver=solver
)
print(f"estimated radius of analyticity R = {float(result.radius):.2f}")
print(
    f"grid points reached: {float(jnp.mean(result.reached)):.0%},"
    f" continued analytically: {float(jnp.mean(result.continued)):.0%}"
)
ho.plot_stability_map(result, "stability_map.png")
# Every point inside the disc is reached and continues analytically.
inside = jnp.abs(result.betas) < 0.9 * result.radius
assert bool(jnp.all(result.continued[inside]))

# --- 3. The fix: a |β| well inside the disc, for the whole batch -----------------
radius = float(ho.safe_beta(model, x, y, cost=cost, solver=solver))
beta = 0.5 * radius  # aliasing error about (|β|/R)^N = 0.5^8 ≈ 4e-3 at most
print(f"safe_beta over the batch: R = {radius:.2f}; training with |β| = {beta:.2f}")
grads, info = ho.gradient(
    ho.HolomorphicEP(beta=beta, num_points=8), model, x, y, cost=cost, solver=solver
)
exact, _ = ho.gradient(
    ho.ImplicitDifferentiation(), model, x, y, cost=cost, solver=solver
)
error = relative_error(grads, exact)
print(
    f"hEP at |β| = {beta:.2f}: relative error {error:.1e},"
    f" max |β|/R {float(jnp.max(info.radius_ratio)):.2f}"
)
assert error < 1e-2
