"""Write your own dynamics as an Equinox model and get exact gradients.

Run with `python docs/tutorials/custom_model.py` (a few seconds on a laptop CPU).
"""

import jax


jax.config.update("jax_enable_x64", True)  # float64: errors down to round-off

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import optax

import holoode as ho


# --- 1. The energy form: write E(u, x) ------------------------------------------
class TanhHopfield(ho.AbstractEnergyModel):
    """A continuous Hopfield network with firing rates tanh(u):

    E(u, x) = ½|u|² − ½ tanh(u)ᵀ W tanh(u) − tanh(u)ᵀ (U x + b),

    so that du/dt = −∂E/∂u = −u + tanh'(u) ⊙ (W tanh(u) + U x + b). Only W's
    symmetric part enters the energy. Every operation is holomorphic (tanh has
    poles at ±iπ/2, far from the real states).
    """

    W: jax.Array
    U: jax.Array
    b: jax.Array
    V: jax.Array
    c: jax.Array

    def __init__(self, n_in, n_hidden, n_out, *, key):
        k1, k2, k3 = jr.split(key, 3)
        self.W = 0.2 * jr.normal(k1, (n_hidden, n_hidden)) / n_hidden**0.5
        self.U = jr.normal(k2, (n_hidden, n_in)) / n_in**0.5
        self.b = jnp.zeros(n_hidden)
        self.V = jr.normal(k3, (n_out, n_hidden)) / n_hidden**0.5
        self.c = jnp.zeros(n_out)

    def energy(self, u, x):
        r = jnp.tanh(u)
        return 0.5 * u @ u - 0.5 * r @ self.W @ r - r @ (self.U @ x + self.b)

    def init_state(self, x):
        return jnp.zeros(self.W.shape[0], x.dtype)

    def readout(self, u, x):
        return self.V @ jnp.tanh(u) + self.c


# --- 2. The primitive form: write Φ(u, x) and σ -----------------------------------
class RecurrentLayer(ho.AbstractPrimitiveModel):
    """One recurrent layer whose fixed points are u = σ(sym(W) u + U x + b), the
    stationary points of E = Σ G(u) − Φ(u) with G' = σ⁻¹. The state is a PyTree:
    here a dict, to show that any PyTree works."""

    W: jax.Array
    U: jax.Array
    V: jax.Array

    def __init__(self, n_in, n_hidden, n_out, *, key):
        k1, k2, k3 = jr.split(key, 3)
        self.W = 0.3 * jr.normal(k1, (n_hidden, n_hidden)) / n_hidden**0.5
        self.U = jr.normal(k2, (n_hidden, n_in)) / n_in**0.5
        self.V = jr.normal(k3, (n_out, n_hidden)) / n_hidden**0.5

    def primitive(self, u, x):
        h = u["hidden"]
        return 0.5 * h @ (0.5 * (self.W + self.W.T)) @ h + h @ (self.U @ x)

    def activation(self, a):
        return {"hidden": ho.shifted_sigmoid(a["hidden"])}

    def init_state(self, x):
        return {"hidden": jnp.zeros(self.W.shape[0], x.dtype)}

    def readout(self, u, x):
        return self.V @ u["hidden"]


def relative_error(grads, reference):
    """Relative L2 distance between two gradient PyTrees."""
    diff = jax.tree_util.tree_map(jnp.subtract, grads, reference)
    norm = lambda tree: optax.tree_utils.tree_norm(tree)  # noqa: E731
    return float(norm(diff) / norm(reference))


# --- 3. Data: a small batch of scikit-learn's 8×8 digits (ships offline) -----------
from sklearn.datasets import load_digits


digits = load_digits()
x = jnp.asarray(digits.data[:16] / 16.0)  # (batch, 64), float64
y = jnp.asarray(digits.target[:16])  # integer labels
cost = ho.CrossEntropy()
model = TanhHopfield(64, 24, 10, key=jr.key(0))

# Holomorphic EP needs every function to be holomorphic: check it numerically
# (raises `holoode.NotHolomorphicError` naming the culprit otherwise).
ho.check_holomorphic(model, x[0], y[0], cost=cost)

# --- 4. Exact gradients ------------------------------------------------------------
# Equilibria by Newton's method on ∂F/∂u = 0 (fast for small states); the default,
# `ho.SteadyStateODE()`, runs the dynamics until they stop moving.
solver = ho.RootFind()
# The reference: implicit differentiation at the free equilibrium (backprop).
exact, _ = ho.gradient(
    ho.ImplicitDifferentiation(), model, x, y, cost=cost, solver=solver
)
# Holomorphic EP: N = 8 nudged equilibria on the circle |β| = 0.2 (only 5 are solved,
# by conjugate symmetry), all in one vmap.
grads, info = ho.gradient(
    ho.HolomorphicEP(beta=0.2, num_points=8), model, x, y, cost=cost, solver=solver
)
error = relative_error(grads, exact)
print(f"holomorphic EP vs implicit differentiation: relative error {error:.1e}")
print(f"  a-posteriori error estimate {float(info.error_estimate):.1e}")
print(f"  |β|/R per example: max {float(jnp.max(info.radius_ratio)):.2f}")
print(f"  solver steps per solve: max {int(jnp.max(info.num_steps))}")
# Exact for finite β up to the aliasing error (|β|/R)^N and the solver tolerance.
assert error < 1e-5, error
assert info.result == ho.RESULTS.successful

# --- 5. Train the primitive-form model --------------------------------------------
# The gradients are shaped like eqx.filter_grad's output, so Optax takes them.
model = RecurrentLayer(64, 24, 10, key=jr.key(1))
rule = ho.HolomorphicEP(beta=0.2, num_points=4)
optimiser = optax.adam(1e-2)
opt_state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))


@eqx.filter_jit
def train_step(model, opt_state, x, y):
    # Under jit, inspect info.result rather than rely on exceptions.
    grads, info = ho.gradient(rule, model, x, y, cost=cost, solver=solver, throw=False)
    updates, opt_state = optimiser.update(grads, opt_state)
    return eqx.apply_updates(model, updates), opt_state, info


losses = []
for step in range(20):
    model, opt_state, info = train_step(model, opt_state, x, y)
    assert info.result == ho.RESULTS.successful, info.result
    losses.append(float(info.loss))
print(f"training loss: {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} steps")
assert losses[-1] < 0.7 * losses[0]
