"""The yardstick: network, data, states, exact reference and the paper's schedules
(benchmarks/README.md, "The yardstick"). The trained weights are cached in
`~/.cache/holoode/yardstick-trained.eqx` (or under `$HOLOODE_CACHE_DIR`), the exact
gradients in `yardstick-reference-HASH.npz` next to them (HASH: of the weights and
the batch they belong to)."""

import hashlib
import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from _harness import cast, flat

import holoode


SIZES = (784, 256, 256, 10)
BATCH = 20
TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR = 200, 50, 0.05
STATES = ("init", "trained")
COST, EXACT = holoode.CrossEntropy(), holoode.ImplicitDifferentiation(lx.LU())


def mnist(start: int, stop: int, dtype=jnp.float32):
    """MNIST training images `start … stop−1`, `(n, 784)` in [0, 1], int32 labels."""
    source = holoode.data.load("mnist", "train")
    x, y = source.get(np.arange(start, stop))
    return jnp.asarray(x.reshape(len(x), -1), dtype), jnp.asarray(y, jnp.int32)


def paper_init(key=jr.key(0), dtype=jnp.float32) -> holoode.nn.HopfieldMLP:
    """The paper's network and initialisation: weights from a normal truncated at
    ±2 standard deviations, rescaled to standard deviation `1/√fan_in`; zero biases."""
    model = holoode.nn.HopfieldMLP(SIZES, key=key, dtype=dtype)
    keys = jr.split(key, len(model.weights))
    truncated_std = 0.87962566103423978  # of a standard normal truncated to [−2, 2]
    fan_in = lambda w: jnp.sqrt(jnp.asarray(w.shape[1], dtype))
    weights = [
        jr.truncated_normal(k, -2.0, 2.0, w.shape, dtype) / truncated_std / fan_in(w)
        for k, w in zip(keys, model.weights)
    ]
    biases = [jnp.zeros_like(b) for b in model.biases]
    return eqx.tree_at(lambda m: (m.weights, m.biases), model, (weights, biases))


def anderson(tol):
    """`AndersonAcceleration(memory=10)` to `tol`, in at most 3000 steps."""
    return holoode.AndersonAcceleration(rtol=tol, atol=tol, memory=10, max_steps=3000)


def _train(model):
    # Gradients at converged equilibria only (unconverged solves give gradients
    # of ~10× the usual norm): a step whose solves fail is skipped, and counted.
    solver = anderson(1e-5)

    @eqx.filter_jit
    def step(m, x, y):
        grads, info = holoode.gradient(
            EXACT, m, x, y, cost=COST, solver=solver, throw=False
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
            print(f"  training step {i}: loss {float(loss):.4f}, {skipped} skipped")
    if not np.isfinite(flat(model)).all():
        raise RuntimeError("The yardstick training diverged.")
    return model


def _cache() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME", str(pathlib.Path.home() / ".cache"))
    path = pathlib.Path(os.environ.get("HOLOODE_CACHE_DIR", f"{base}/holoode"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def network(state: str) -> holoode.nn.HopfieldMLP:
    """The yardstick network at `state` (`"init"` or `"trained"`), float32."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}.")
    model = paper_init()
    if state == "init":
        return model
    path = _cache() / "yardstick-trained.eqx"
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
    """The equilibrium the dynamics reach from the initial state (the physical one),
    refined: `SteadyStateODE` to 1e-8, then Anderson acceleration to `rtol`/`atol`."""

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
    """The float64 reference: implicit differentiation (dense LU adjoint) at the
    `DynamicsThenRefine` equilibrium, solved to 1e-12; as float64 arrays (computed
    once per weights and batch, then read from the cache: minutes at
    initialisation, where the dynamics relax slowly)."""
    arrays = [*jtu.tree_leaves(eqx.filter(model, eqx.is_array)), x, y]
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    path = _cache() / f"yardstick-reference-{digest.hexdigest()[:16]}.npz"
    structure = jtu.tree_structure(eqx.filter(model, eqx.is_array))
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            leaves = [stored[f"leaf{i}"] for i in range(len(stored.files))]
        return jtu.tree_unflatten(structure, leaves)
    with jax.enable_x64(True):
        m64, x64 = cast(model, jnp.float64), jnp.asarray(x, jnp.float64)
        solver = DynamicsThenRefine()
        grads, _ = holoode.gradient(EXACT, m64, x64, y, cost=COST, solver=solver)
        grads = jtu.tree_map(np.asarray, grads)
    leaves = jtu.tree_leaves(grads)
    assert jtu.tree_structure(grads) == structure
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{f"leaf{i}": a for i, a in enumerate(leaves)})
    tmp.replace(path)
    return grads


# The paper's schedules, re-implemented as baselines (not part of the library).


def _relax(model, x, y, u, beta, steps):
    """`steps` synchronous updates `u ← σ(∂(Φ − βC)/∂u)` of the whole batch."""

    one = lambda v, x, y: jtu.tree_map(
        jnp.add, v, model.vector_field(v, x, y, beta, COST)
    )
    return jax.lax.fori_loop(0, steps, lambda _, v: jax.vmap(one)(v, x, y), u)


def _signal(model, states, x, y, betas, weights):
    """`Re Σ_k w_k mean_b ∂F/∂θ(u_kb, β_k)` for states shaped `(points, batch, ...)`."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    dtype = jnp.result_type(weights.dtype, jtu.tree_leaves(states)[0].dtype)
    params_c = jtu.tree_map(lambda a: a.astype(dtype), params)

    def total(p):
        m = eqx.combine(p, static)

        def per_point(u_k, b_k, w_k):
            energy = lambda u, x, y: m.parameter_energy(u, x, y, b_k, COST)
            return w_k * jnp.mean(jax.vmap(energy)(u_k, x, y))

        return jnp.sum(jax.vmap(per_point)(states, betas, weights))

    out, vjp = jax.vjp(total, params_c)
    grads = vjp(jnp.ones_like(out))[0]
    return jtu.tree_map(lambda g, p: jnp.real(g).astype(p.dtype), grads, params)


def paper_hep(beta: float, num_points: int, free_steps=200, nudged_steps=50):
    """The paper's hEP schedule: `(model, x, y) -> grads` (jitted)."""

    @eqx.filter_jit
    def gradient(model, x, y):
        cdtype = jnp.result_type(x.dtype, jnp.complex64)
        u = _relax(model, x, y, jax.vmap(model.init_state)(x), 0.0, free_steps)
        n, k = num_points, jnp.arange(num_points // 2 + 1)
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


def paper_oscillating(beta=0.4, num_points=10, free_steps=200, steps=30, periods=3):
    """The paper's oscillating schedule: the points visited in turn, `steps` each,
    for `periods` periods; the gradient from the last period. Jitted."""

    @eqx.filter_jit
    def gradient(model, x, y):
        cdtype = jnp.result_type(x.dtype, jnp.complex64)
        u = _relax(model, x, y, jax.vmap(model.init_state)(x), 0.0, free_steps)
        u = jtu.tree_map(lambda a: a.astype(cdtype), u)
        phis = 2 * jnp.pi * (jnp.arange(periods * num_points) % num_points) / num_points
        betas = (beta * jnp.exp(1j * phis)).astype(cdtype)

        def visit(v, b):
            v = _relax(model, x, y, v, b, steps)
            return v, v

        _, states = jax.lax.scan(visit, u, betas)
        last = jtu.tree_map(lambda a: a[-num_points:], states)
        weights = jnp.exp(-1j * phis[-num_points:]) / (num_points * beta)
        return _signal(model, last, x, y, betas[-num_points:], weights.astype(cdtype))

    return gradient
