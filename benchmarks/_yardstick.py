"""The yardstick: the workload every speed and exactness benchmark is measured on.

The MNIST network of Laborieux & Zenke (2022) on real MNIST, at two states:

- **network**: `holoode.nn.HopfieldMLP((784, 256, 256, 10))`, shifted sigmoid
  `σ(a) = 1/(1 + e^{−4a+2})`, `Φ = Σ h_{l+1}·(W_l h_l + b_l)`, cross-entropy
  readout; the paper's initialisation (truncated normal with standard deviation
  `1/√fan_in`, zero biases); float32.
- **batch**: the first 20 images of the MNIST training set, in order.
- **states**: `"init"` (seed 0) and `"trained"`: 200 SGD steps from `"init"`
  (learning rate 0.05, batch 50 = images 0…9,999 in order, gradients by
  implicit differentiation with a dense LU adjoint at equilibria solved by
  `AndersonAcceleration(memory=10)` to 1e-5 in at most 3000 steps; a step
  whose solves fail would be skipped, and is counted). Trained
  networks relax more slowly and have smaller radii of analyticity: the
  defaults must be exact there too.
- **exact reference**: float64 implicit differentiation with a dense LU adjoint
  at the stable equilibrium the dynamics reach from the initial state
  (`DynamicsThenRefine`: `SteadyStateODE`, then Anderson to 1e-12) (checked
  against central finite differences by `check_reference`). Some images have
  several stable equilibria, and solvers may find either; the dynamics'
  one is the physical network's.
- **the paper's schedule** (`paper_hep`, `paper_ep`): the synchronous update
  `h ← σ(∂(Φ − βC)/∂h)` for a fixed number of steps: T1 = 200 free steps, then
  for hEP the `⌊N/2⌋ + 1` points of the upper half circle (conjugate symmetry),
  each started from the free state, T2 = 50 steps each, in complex64; classic EP
  with T1 = T2 = 350. Compiled loops (`lax.fori_loop`), one jitted program.

The trained weights are computed once and cached as
`~/.cache/holoode/yardstick-trained.eqx` (or under `$HOLOODE_CACHE_DIR`).
"""

import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
import numpy as np

import holoode


SIZES = (784, 256, 256, 10)
BATCH = 20
TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR = 200, 50, 0.05
STATES = ("init", "trained")
COST = holoode.CrossEntropy()


def _cache_dir() -> pathlib.Path:
    root = os.environ.get("HOLOODE_CACHE_DIR")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME", str(pathlib.Path.home() / ".cache"))
        root = os.path.join(base, "holoode")
    path = pathlib.Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mnist(start: int, stop: int, dtype=jnp.float32):
    """MNIST training images `start … stop−1` flattened to `(n, 784)` in [0, 1],
    with int32 labels."""
    source = holoode.data.load("mnist", "train")
    x, y = source.get(np.arange(start, stop))
    return jnp.asarray(x.reshape(len(x), -1), dtype), jnp.asarray(y, jnp.int32)


def paper_init(key=jr.key(0), dtype=jnp.float32) -> holoode.nn.HopfieldMLP:
    """The paper's MNIST network with its initialisation: weights from a normal
    truncated at ±2 standard deviations, rescaled to standard deviation
    `1/√fan_in`; zero biases."""
    model = holoode.nn.HopfieldMLP(SIZES, key=key, dtype=dtype)
    keys = jr.split(key, len(model.weights))
    # The standard deviation of a standard normal truncated to [−2, 2].
    truncated_std = 0.87962566103423978
    weights = [
        jr.truncated_normal(k, -2.0, 2.0, w.shape, dtype)
        / truncated_std
        / jnp.sqrt(jnp.asarray(w.shape[1], dtype))
        for k, w in zip(keys, model.weights)
    ]
    biases = [jnp.zeros_like(b) for b in model.biases]
    return eqx.tree_at(lambda m: (m.weights, m.biases), model, (weights, biases))


def _train(model):
    # The trained state only has to be a network after 200 SGD steps, but its
    # gradients must be those of converged, stable equilibria: unconverged solves
    # give gradients of ~10× the usual norm that throw the training off. The
    # equilibria are solved to a distance of 1e-5 in at most 3000 steps, the
    # adjoint by a dense LU solve; a step whose solves fail is skipped, and
    # counted.
    solver = holoode.AndersonAcceleration(
        rtol=1e-5, atol=1e-5, memory=10, max_steps=3000
    )
    rule = holoode.ImplicitDifferentiation(lx.LU())

    @eqx.filter_jit
    def step(m, x, y):
        grads, info = holoode.gradient(
            rule, m, x, y, cost=COST, solver=solver, throw=False
        )
        ok = info.result == holoode.RESULTS.successful
        update = jtu.tree_map(lambda g: jnp.where(ok, -TRAIN_LR * g, 0.0), grads)
        return eqx.apply_updates(m, update), info.loss, ok

    skipped = 0
    for i in range(TRAIN_STEPS):
        x, y = mnist(i * TRAIN_BATCH, (i + 1) * TRAIN_BATCH)
        model, loss, ok = step(model, x, y)
        skipped += not bool(ok)
        if i % 10 == 0 or i == TRAIN_STEPS - 1:
            print(
                f"  yardstick training step {i}: loss {float(loss):.4f} "
                f"({skipped} skipped so far)",
                flush=True,
            )
    leaves = jtu.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    if not all(bool(jnp.all(jnp.isfinite(a))) for a in leaves):
        raise RuntimeError("The yardstick training diverged.")
    return model


def _cast(model, dtype):
    return jtu.tree_map(
        lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model
    )


def network(state: str) -> holoode.nn.HopfieldMLP:
    """The yardstick network at `state` (`"init"` or `"trained"`), float32."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}.")
    model = paper_init()
    if state == "init":
        return model
    path = _cache_dir() / "yardstick-trained.eqx"
    if path.exists():
        return eqx.tree_deserialise_leaves(path, model)
    print(f"Training the yardstick network once ({TRAIN_STEPS} steps) -> {path}")
    model = _train(model)
    tmp = path.with_suffix(".tmp")
    eqx.tree_serialise_leaves(tmp, model)
    tmp.replace(path)
    return model


def load(state: str):
    """`(model, x, y)`: the yardstick network at `state` and its batch."""
    x, y = mnist(0, BATCH)
    return network(state), x, y


class DynamicsThenRefine(holoode.AbstractEquilibriumSolver):
    """The stable equilibrium the network's dynamics reach from the initial
    state, refined: `SteadyStateODE` to 1e-8, then Anderson acceleration to
    `rtol`/`atol`.

    Some images have several stable equilibria (`benchmarks/saddles.py` counts
    those where the library's free phase finds another one than the dynamics);
    a root finder or Anderson acceleration started from the initial state may
    land on either. The reference follows the
    dynamics, which is the equilibrium of the physical network (and of
    `holoode.SteadyStateODE`)."""

    rtol: float = 1e-12
    atol: float = 1e-12
    max_steps: int = 100_000

    def solve(self, vector_field, u0, *, differentiable):
        ode = holoode.SteadyStateODE(rtol=1e-8, atol=1e-8, max_steps=self.max_steps)
        relaxed = ode.solve(vector_field, u0, differentiable=differentiable)
        refine = holoode.AndersonAcceleration(
            rtol=self.rtol, atol=self.atol, max_steps=self.max_steps
        )
        return refine.solve(vector_field, relaxed.value, differentiable=differentiable)


def exact_gradient(model, x, y):
    """The float64 reference gradient: implicit differentiation (dense LU
    adjoint) at the equilibrium the dynamics reach from the initial state
    (`DynamicsThenRefine`), solved to 1e-12; as float64 arrays."""
    with jax.enable_x64(True):
        m64 = _cast(model, jnp.float64)
        grads, _ = holoode.gradient(
            holoode.ImplicitDifferentiation(lx.LU()),
            m64,
            jnp.asarray(x, jnp.float64),
            y,
            cost=COST,
            solver=DynamicsThenRefine(),
        )
        return jtu.tree_map(np.asarray, grads)


def flat(tree) -> np.ndarray:
    leaves = jtu.tree_leaves(eqx.filter(tree, eqx.is_array))
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in leaves])


def relative_error(grads, reference) -> float:
    g, r = flat(grads), flat(reference)
    return float(np.linalg.norm(g - r) / np.linalg.norm(r))


def check_reference(model, x, y, reference, *, num_directions=3, h=1e-4) -> float:
    """Largest relative mismatch between the reference's directional derivative
    and central finite differences of the float64 loss at the free equilibrium,
    along random parameter directions."""
    with jax.enable_x64(True):
        m64 = _cast(model, jnp.float64)
        x64 = jnp.asarray(x, jnp.float64)
        solver = holoode.AndersonAcceleration(rtol=1e-13, atol=1e-13, max_steps=20_000)

        @eqx.filter_jit
        def loss(m):
            _, info = holoode.gradient(
                holoode.ImplicitDifferentiation(lx.LU()),
                m,
                x64,
                y,
                cost=COST,
                solver=solver,
            )
            return info.loss

        params, static = eqx.partition(m64, eqx.is_inexact_array)
        worst = 0.0
        for i in range(num_directions):
            leaves, treedef = jtu.tree_flatten(params)
            keys = jr.split(jr.key(100 + i), len(leaves))
            direction = jtu.tree_unflatten(
                treedef, [jr.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)]
            )
            shifted = lambda s: eqx.combine(  # noqa: E731
                jtu.tree_map(lambda p, d: p + s * d, params, direction), static
            )
            fd = (float(loss(shifted(h))) - float(loss(shifted(-h)))) / (2 * h)
            ref = float(np.dot(flat(reference), flat(direction)))
            worst = max(worst, abs(fd - ref) / abs(ref))
        return worst


# ---------------------------------------------------------------------------
# The paper's schedule, re-implemented as a baseline (not part of the library)
# ---------------------------------------------------------------------------


def _relax(model, x, y, u, beta, steps):
    """`steps` synchronous updates `u ← σ(∂(Φ − βC)/∂u)` of the whole batch."""

    def step(_, v):
        def one(v_b, x_b, y_b):
            f = model.vector_field(v_b, x_b, y_b, beta, COST)
            return jtu.tree_map(jnp.add, v_b, f)

        return jax.vmap(one)(v, x, y)

    return jax.lax.fori_loop(0, steps, step, u)


def _signal(model, states, x, y, betas, weights):
    """`Re Σ_k w_k mean_b ∂F/∂θ(u_kb, β_k)` for states shaped `(points, batch, ...)`."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    dtype = jnp.result_type(weights.dtype, jtu.tree_leaves(states)[0].dtype)
    params_c = jtu.tree_map(lambda a: a.astype(dtype), params)

    def total(p):
        m = eqx.combine(p, static)

        def per_point(u_k, b_k, w_k):
            energy = jax.vmap(
                lambda u_b, x_b, y_b: m.parameter_energy(u_b, x_b, y_b, b_k, COST)
            )(u_k, x, y)
            return w_k * jnp.mean(energy)

        return jnp.sum(jax.vmap(per_point)(states, betas, weights))

    out, vjp = jax.vjp(total, params_c)
    grads = vjp(jnp.ones_like(out))[0]
    return jtu.tree_map(lambda g, p: jnp.real(g).astype(p.dtype), grads, params)


def paper_hep(beta: float, num_points: int, free_steps=200, nudged_steps=50):
    """The paper's hEP schedule: `(model, x, y) -> grads` (jitted)."""

    @eqx.filter_jit
    def gradient(model, x, y):
        rdtype = x.dtype
        cdtype = jnp.result_type(rdtype, jnp.complex64)
        u = _relax(model, x, y, jax.vmap(model.init_state)(x), 0.0, free_steps)
        n = num_points
        k = jnp.arange(n // 2 + 1)
        phis = 2 * jnp.pi * k / n
        betas = (beta * jnp.exp(1j * phis)).astype(cdtype)
        paired = (k > 0) & (2 * k != n)
        weights = jnp.where(paired, 2.0, 1.0) * jnp.exp(-1j * phis) / (n * beta)
        u_c = jtu.tree_map(lambda a: a.astype(cdtype), u)
        # Every point starts from the free state (all points in one vmap).
        states = jax.vmap(lambda b: _relax(model, x, y, u_c, b, nudged_steps))(betas)
        return _signal(model, states, x, y, betas, weights.astype(cdtype))

    return gradient


def paper_ep(beta: float, free_steps=350, nudged_steps=350):
    """The paper's classic one-sided EP schedule: `(model, x, y) -> grads`."""

    @eqx.filter_jit
    def gradient(model, x, y):
        u = _relax(model, x, y, jax.vmap(model.init_state)(x), 0.0, free_steps)
        u_beta = _relax(model, x, y, u, beta, nudged_steps)
        states = jtu.tree_map(lambda a, b: jnp.stack([a, b]), u, u_beta)
        betas = jnp.array([0.0, beta], x.dtype)
        weights = jnp.array([-1.0, 1.0], x.dtype) / beta
        return _signal(model, states, x, y, betas, weights)

    return gradient
