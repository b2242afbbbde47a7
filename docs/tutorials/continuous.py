"""Continuous-time, single-phase learning: `ContinuousHEP` and `online_plasticity`.

Run with `python docs/tutorials/continuous.py` (well under a minute on a laptop CPU).
"""

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import optax
from sklearn.datasets import load_digits

import holoode as ho


digits = load_digits()
x = jnp.asarray(digits.data[:8] / 16.0)  # a batch of 8 examples, float64
y = jnp.asarray(digits.target[:8])
cost = ho.CrossEntropy()
model = ho.nn.HopfieldMLP((64, 16, 10), key=jr.key(0), dtype=jnp.float64)


def relative_error(grads, reference):
    diff = jax.tree_util.tree_map(jnp.subtract, grads, reference)
    return float(
        optax.tree_utils.tree_norm(diff) / optax.tree_utils.tree_norm(reference)
    )


exact, info = ho.gradient(ho.ImplicitDifferentiation(), model, x, y, cost=cost)
print(f"loss at the free equilibrium: {float(info.loss):.4f}")

# --- 1. One run, no phases: the gradient from a rotating teaching signal ----------
# The network runs from its initial state while β(t) = |β| e^{iωt} rotates; the
# learning signal Re[∂F/∂θ e^{−iωt}] / |β| is integrated inside the same ODE over
# `num_periods` whole periods. The period must be slow compared with the network's
# relaxation time τ (the slowest time constant of its linearised free dynamics).
tau = float(jnp.max(ho.relaxation_time(model, x, y, cost=cost)))
print(f"relaxation time τ = {tau:.2f} (slowest example of the batch)")
# `period` is an array field of the rule, so this sweep compiles once.
errors = {}
for multiple in [10, 20, 40]:
    rule = ho.ContinuousHEP(beta=0.5, period=multiple * tau, num_periods=1)
    grads, info = ho.gradient(rule, model, x, y, cost=cost)
    errors[multiple] = relative_error(grads, exact)
    print(
        f"period {multiple:2d}τ: relative error {errors[multiple]:.1e}"
        f"  (estimate from the lag {float(info.error_estimate):.1e},"
        f" {int(info.num_steps.max())} ODE steps)"
    )
# The network lags behind the rotating β by about τω; the first-order lag drops out
# of the real part, so the bias falls like (τ/T)²: doubling T divides it by ~4.
for fast, slow in [(10, 20), (20, 40)]:
    print(f"error ratio {fast}τ / {slow}τ: {errors[fast] / errors[slow]:.1f}")
assert 2.5 < errors[20] / errors[40] < 6

# --- 2. Online plasticity: the weights move while the examples stream past --------
# Neurons and synapses are one ODE: dθ/dt = −η Re[∂F/∂θ(u, β(t)) e^{−iωt}] / |β|.
# Example k is clamped during [k D, (k+1) D), D = periods_per_example · period,
# without resetting the neurons.
x_train = jnp.asarray(digits.data[:64] / 16.0)
y_train = jnp.asarray(digits.target[:64])
_, info_before = ho.gradient(
    ho.ImplicitDifferentiation(), model, x_train, y_train, cost=cost
)
print(f"before training: training loss {float(info_before.loss):.4f}")
trained = model
for epoch in range(3):
    trained, result = ho.online_plasticity(
        trained,
        x_train,
        y_train,
        cost=cost,
        beta=0.5,
        period=20.0,
        periods_per_example=1,
        learning_rate=0.01,  # per unit time: 0.01 × 20 = an SGD step of 0.2 per example
    )
    _, info = ho.gradient(
        ho.ImplicitDifferentiation(), trained, x_train, y_train, cost=cost
    )
    print(f"online epoch {epoch + 1}: training loss {float(info.loss):.4f}")
assert float(info.loss) < 0.8 * float(info_before.loss)
