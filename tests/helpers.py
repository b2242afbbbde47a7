"""Test models, references and the lists every test parametrises over."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx

import holoode as ho


class QuarticHopfield(ho.AbstractEnergyModel):
    """Energy form: `E = ½|u|² + ¼α Σu⁴ − ½ uᵀ sym(W) u − u·(Ux + b)`,
    readout `Vu + c`. Convex (one equilibrium) for small `W`."""

    W: jax.Array
    U: jax.Array
    b: jax.Array
    V: jax.Array
    c: jax.Array
    alpha: float = 0.5

    def __init__(self, n_in=4, n=6, n_out=3, *, key, dtype=jnp.float64):
        k = jr.split(key, 5)
        self.W = 0.3 * jr.normal(k[0], (n, n), dtype) / n**0.5
        self.U = jr.normal(k[1], (n, n_in), dtype) / n_in**0.5
        self.b = 0.1 * jr.normal(k[2], (n,), dtype)
        self.V = jr.normal(k[3], (n_out, n), dtype) / n**0.5
        self.c = 0.1 * jr.normal(k[4], (n_out,), dtype)

    def energy(self, u, x):
        sym = 0.5 * (self.W + self.W.T)
        return (
            0.5 * jnp.sum(u**2)
            + 0.25 * self.alpha * jnp.sum(u**4)
            - 0.5 * u @ sym @ u
            - u @ (self.U @ x + self.b)
        )

    def init_state(self, x):
        return jnp.zeros(self.W.shape[0], x.dtype)

    def readout(self, u, x):
        return self.V @ u + self.c


class LinearPole(ho.AbstractEnergyModel):
    """Scalar state, `E = ½ a u² − w x u`, readout `u`: with the squared error the
    nudged equilibrium is `u*_β = (w x + β y) / (a + β)`, a single pole at
    `β = −a`. The radius of analyticity is exactly `|a|`."""

    a: jax.Array
    w: jax.Array

    def energy(self, u, x):
        return 0.5 * self.a * jnp.sum(u**2) - self.w * jnp.sum(x * u)

    def init_state(self, x):
        return jnp.zeros((1,), x.dtype)

    def readout(self, u, x):
        return u


class AbsEnergy(QuarticHopfield):
    def energy(self, u, x):  # pyright: ignore
        return 0.5 * jnp.sum(jnp.abs(u) ** 2) - u @ (self.U @ x)


def mlp(sizes=(4, 7, 5, 3), *, seed=0, gain=1.5):
    return ho.nn.HopfieldMLP(sizes, key=jr.key(seed), gain=gain, dtype=jnp.float64)


def data(n_in=4, n_out=3, batch=5, *, seed=1, labels=True):
    kx, ky = jr.split(jr.key(seed))
    x = jr.uniform(kx, (batch, n_in), jnp.float64)
    if labels:
        y = jr.randint(ky, (batch,), 0, n_out)
    else:
        y = jr.normal(ky, (batch, n_out), jnp.float64)
    return x, y


TIGHT = ho.RootFind(rtol=1e-13, atol=1e-13)
EXACT = ho.ImplicitDifferentiation(linear_solver=lx.LU())

# Every solver and rule, so that a new member is tested everywhere at once.
SOLVERS = [
    ho.SteadyStateODE(),
    ho.RootFind(),
    ho.FixedPointIteration(step_size=0.5),
    ho.AndersonAcceleration(),
]

RULES = [
    ho.ImplicitDifferentiation(),
    ho.BackpropThroughTime(),
    ho.HolomorphicEP(beta=0.1, num_points=12),
]


_REFERENCES = {}


def reference(model, x, y, cost):
    """Implicit differentiation with a tight Newton solve and a dense LU adjoint,
    cached because several tests share a problem."""
    key = (
        type(model).__name__,
        tuple(
            float(jnp.sum(a)) for a in jtu.tree_leaves(eqx.filter(model, eqx.is_array))
        ),
        float(jnp.sum(x)),
        float(jnp.sum(y)),
        type(cost).__name__,
    )
    if key not in _REFERENCES:
        _REFERENCES[key] = ho.gradient(EXACT, model, x, y, cost=cost, solver=TIGHT)[0]
    return _REFERENCES[key]


def flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jtu.tree_leaves(tree)])


def rel_error(a, b):
    a, b = flat(a), flat(b)
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def loss(model, x, y, cost):
    _, info = ho.gradient(EXACT, model, x, y, cost=cost, solver=TIGHT)
    return info.loss


def perturb(model, direction, h):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return eqx.combine(jtu.tree_map(lambda p, d: p + h * d, params, direction), static)


def random_direction(model, key):
    params = eqx.filter(model, eqx.is_inexact_array)
    leaves, treedef = jtu.tree_flatten(params)
    keys = jr.split(key, len(leaves))
    return jtu.tree_unflatten(
        treedef, [jr.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves)]
    )


def fit_slope(xs, ys):
    """Least-squares slope of `ys` against `xs`."""
    xs, ys = jnp.asarray(xs, float), jnp.asarray(ys, float)
    A = jnp.stack([xs, jnp.ones_like(xs)], axis=1)
    return float(jnp.linalg.lstsq(A, ys)[0][0])
