"""Choosing an equilibrium solver: steps, time and gradient error on one model.

Run with `python docs/tutorials/solvers.py` (about a minute on a laptop CPU: most
of it is compiling each solver once).
"""

import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import optax
from sklearn.datasets import load_digits

import holoode as ho


digits = load_digits()
x = jnp.asarray(digits.data[:16] / 16.0)
y = jnp.asarray(digits.target[:16])
cost = ho.CrossEntropy()
model = ho.nn.HopfieldMLP((64, 32, 32, 10), key=jr.key(0), dtype=jnp.float64)
rule = ho.HolomorphicEP(beta=0.5, num_points=4)

# The reference: a tight Newton solve and a direct (LU) adjoint solve.
exact, _ = ho.gradient(
    ho.ImplicitDifferentiation(linear_solver=lx.LU()),
    model,
    x,
    y,
    cost=cost,
    solver=ho.RootFind(rtol=1e-12, atol=1e-12),
)


def relative_error(grads, reference):
    diff = jax.tree_util.tree_map(jnp.subtract, grads, reference)
    return float(
        optax.tree_utils.tree_norm(diff) / optax.tree_utils.tree_norm(reference)
    )


# Each is one line to swap; more (Diffrax's implicit Kvaerno5 with
# `split_complex=True`, Optimistix's Chord via `RootFind(solver=optx.Chord(...))`)
# are compared in the solver benchmark.
solvers = {
    "SteadyStateODE (Tsit5)": ho.SteadyStateODE(),
    "RootFind (Newton)": ho.RootFind(),
    "FixedPointIteration": ho.FixedPointIteration(),
    "AndersonAcceleration": ho.AndersonAcceleration(),
}

print(f"{'solver':24s} {'compile+run':>11s} {'run':>8s} {'steps':>6s} {'error':>8s}")
results = {}
for name, solver in solvers.items():
    start = time.perf_counter()
    grads, info = ho.gradient(rule, model, x, y, cost=cost, solver=solver)
    jax.block_until_ready(grads)
    first = time.perf_counter() - start
    start = time.perf_counter()  # the second call is compiled already
    grads, info = ho.gradient(rule, model, x, y, cost=cost, solver=solver)
    jax.block_until_ready(grads)
    run = time.perf_counter() - start
    steps = int(info.num_steps.max())  # the largest count of any one solve
    results[name] = grads
    error = relative_error(grads, exact)
    print(f"{name:24s} {first:10.2f}s {1e3 * run:6.0f}ms {steps:6d} {error:8.1e}")

# Every solver reaches the default tolerance (1e-10 in float64), so all land on the
# same gradient; what remains against the reference is hEP's own aliasing error at
# this |β| and N, the same for all.
first = next(iter(results.values()))
for name, grads in results.items():
    assert relative_error(grads, first) < 1e-6, name
