"""A numerical check that a model is holomorphic where holomorphic EP needs it."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._costs import AbstractCost
from ._misc import (
    complex_dtype,
    default_tolerance,
    real_dtype,
    tree_astype,
    tree_dtype,
)
from ._model import (
    AbstractEnergyModel,
    AbstractEquilibriumModel,
    AbstractPrimitiveModel,
)


class NotHolomorphicError(ValueError):
    """A model's energy, primitive, activation or readout is not holomorphic."""


_FIX = (
    "Holomorphic EP evaluates the model at complex states and parameters, so every "
    "operation must be holomorphic: replace `abs`, `conj`, `real`/`imag`, `maximum`/"
    "`minimum`, `relu`, `where`-based kinks and `sort` with holomorphic ones (e.g. "
    "`holoode.shifted_sigmoid`, `jnp.tanh`, polynomials, `jnp.exp`/`jnp.log`)."
)


def _leaf_paths(tree) -> list[str]:
    return [jtu.keystr(path) for path, _ in jtu.tree_flatten_with_path(tree)[0]]


def _mismatch(a: Array, b: Array, floor: Array) -> Array:
    """`|a − b|` relative to `|a| + |b|`, ignoring differences below `floor` (the
    round-off of a function that does not depend on the direction at all)."""
    return jnp.abs(a - b) / jnp.maximum(jnp.abs(a) + jnp.abs(b), floor)


def _test_function(fn, args, masks, noise, num_points, radius):
    """Worst Cauchy–Riemann and Cauchy-integral mismatches of scalar `fn(args)`
    along random directions restricted to the leaves selected by `masks`.

    `noise` holds standard normal samples per leaf of `args`, shaped
    `(circles, 3, *leaf.shape)` (centre, direction and offset of each circle);
    drawing them outside keeps the compiled program small."""
    leaves, treedef = jtu.tree_flatten(args)

    def one(samples):
        # A fresh real centre per circle, so that seams (e.g. of `maximum` at 0) are
        # crossed by some circle with high probability.
        centre = [
            a + jnp.where(m, n[0] * (jnp.std(a) + 0.1), 0).astype(a.dtype)
            for m, a, n in zip(masks, leaves, samples)
        ]
        dirs = [
            jnp.where(m, n[1], 0).astype(a.dtype)
            for m, a, n in zip(masks, leaves, samples)
        ]
        # A unit direction (over all tested entries together): the circle's radius
        # is then absolute, whatever the size of the arrays; per-entry unit
        # directions would put a large weight matrix's circle √size too far out,
        # where the trapezoidal rule's aliasing error exceeds the tolerance.
        norm = jnp.sqrt(sum(jnp.sum(jnp.abs(d) ** 2) for d in dirs))
        norm = jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)  # empty leaves
        dirs = [d / norm.astype(d.dtype) for d in dirs]
        offs = [
            jnp.where(m, n[2], 0).astype(a.dtype)
            for m, a, n in zip(masks, leaves, samples)
        ]
        f = lambda ls: fn(jtu.tree_unflatten(treedef, ls))  # noqa: E731
        # One batched JVP (a single copy of `f` to compile): at a complex point z
        # along v and along iv, and at the real centre along v.
        z = [a + 0.3j * o for a, o in zip(centre, offs)]
        points = [jnp.stack([zi, zi, ci]) for zi, ci in zip(z, centre)]
        tangents = [jnp.stack([d, 1j * d, d]) for d in dirs]
        values, slopes = jax.vmap(lambda p, t: jax.jvp(f, (p,), (t,)))(points, tangents)
        jv, jiv, jv0 = slopes[0], slopes[1], slopes[2]
        floor = jnp.sqrt(jnp.finfo(real_dtype(leaves[0].dtype)).eps) * (
            1.0 + jnp.abs(values[2])
        )
        # Cauchy–Riemann at a complex point: J(iv) = i J(v) for holomorphic f.
        cr = _mismatch(jiv, 1j * jv, floor)
        # Cauchy's integral at a real point: the first Fourier coefficient of
        # f(c + ρ e^{iφ} v) over the circle is ρ J(v). This also catches functions
        # that are holomorphic piecewise (maximum, where) when the circle crosses a
        # seam, the failure that would corrupt a holomorphic EP estimate.
        phi = 2 * jnp.pi * jnp.arange(num_points) / num_points
        circle = jax.vmap(
            lambda p: f(
                [a + radius * jnp.exp(1j * p) * d for a, d in zip(centre, dirs)]
            )
        )(phi)
        first = jnp.mean(circle * jnp.exp(-1j * phi)) / radius
        cauchy = _mismatch(first, jv0, floor / radius)
        return cr, cauchy

    cr, cauchy = jax.vmap(one)(noise)
    return jnp.max(cr), jnp.max(cauchy)


def _functions(model, x, y, cost, weights) -> dict:
    """The scalar functions of `(u, θ)` to test, by name (`weights`: one array per
    state leaf, to turn the activation into a scalar)."""
    _, static = eqx.partition(model, eqx.is_inexact_array)
    functions = {}
    if isinstance(model, AbstractEnergyModel):
        functions["energy(u, x)"] = lambda a: eqx.combine(a[1], static).energy(a[0], x)
    elif isinstance(model, AbstractPrimitiveModel):
        functions["primitive(u, x)"] = lambda a: eqx.combine(a[1], static).primitive(
            a[0], x
        )

        def activation(a):
            s = eqx.combine(a[1], static).activation(a[0])
            return sum(jnp.sum(w * si) for w, si in zip(weights, jtu.tree_leaves(s)))

        functions["activation(a)"] = activation
    if cost is not None and y is not None:
        functions["cost(readout(u, x), y)"] = lambda a: eqx.combine(a[1], static).loss(
            a[0], x, y, cost
        )
    return functions


@eqx.filter_jit
def _run_tests(model, x, y, cost, samples, masks, num_points, radius):
    """Every test of every function in one compiled program, batched over the
    groups of leaves (rows of the static `masks`). `samples` holds the random
    numbers, drawn outside so that the program stays small (a counter-based
    generator inside made compilation several times slower). Returns
    `{name: (cr, cauchy)}`, each shaped `(groups,)`."""
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    cdtype = complex_dtype(real_dtype(tree_dtype(params)))
    u0 = model.init_state(x)
    u0 = jtu.tree_unflatten(
        jtu.tree_structure(u0),
        [(a + n).astype(cdtype) for a, n in zip(jtu.tree_leaves(u0), samples["state"])],
    )
    args = (u0, tree_astype(params, cdtype))
    masks = np.asarray(masks)
    out = {}
    functions = _functions(model, x, y, cost, samples["weights"])
    for name, fn in functions.items():

        def group(mask_row, noise_g):
            return _test_function(fn, args, list(mask_row), noise_g, num_points, radius)

        out[name] = jax.vmap(group)(masks, samples["circles"][name])
    return out


def _samples(model, x, y, cost, key, groups, num_circles, rdtype) -> dict:
    """Standard normal samples for `_run_tests`, from NumPy seeded by `key`."""
    rng = np.random.default_rng(np.asarray(jr.key_data(key)).ravel().tolist())
    state = jax.eval_shape(model.init_state, x)
    params = eqx.filter(model, eqx.is_inexact_array)
    shapes = [a.shape for a in jtu.tree_leaves((state, params))]
    state_shapes = [a.shape for a in jtu.tree_leaves(state)]

    def normal(shape):
        return jnp.asarray(rng.standard_normal(shape), rdtype)

    samples = {
        "state": [normal(s) for s in state_shapes],
        "weights": [normal(s) for s in state_shapes],
    }
    names = _functions(model, x, y, cost, samples["weights"])
    samples["circles"] = {
        name: [normal((groups, num_circles, 3) + s) for s in shapes] for name in names
    }
    return samples


def check_holomorphic(
    model: AbstractEquilibriumModel,
    x: Array,
    y=None,
    *,
    cost: AbstractCost | None = None,
    key: PRNGKeyArray | None = None,
    num_circles: int = 16,
    num_points: int = 8,
    radius: float = 0.1,
    rtol: float | None = None,
) -> None:
    """Check numerically that a model is holomorphic in its state and parameters.

    Holomorphic EP is exact only if the energy (or primitive and activation) and
    the readout and cost are holomorphic in the state `u` and the parameters `θ`. A
    function that is not (it uses `abs`, `conj`, `maximum`, ...) gives a wrong
    gradient without any other sign. This check evaluates each function at random
    points around `init_state(x)` (perturbed by unit Gaussian noise) and the
    model's parameters, along random directions in the state and in each parameter
    leaf separately (each circle has its own random real centre), and applies two
    tests:

    - Cauchy–Riemann at a complex point: `J(iv) = i J(v)`.
    - Cauchy's integral on a circle of `radius` through a real point: the first
      Fourier coefficient of `f(c + ρ e^{iφ} v)` equals `ρ J(v)`. This catches
      functions that are holomorphic piecewise (like `maximum`) when a circle
      crosses a seam; random circles make that likely but not certain.

    All tests run in one compiled program, reused by later calls on models of the
    same structure; the first call compiles (seconds for a small network).

    Caveat: a numerical check, not a proof; a seam far from the sampled points
    can go unnoticed.

    **Arguments:**

    - `model`: the model; `x`: one example's input (no batch axis: pass `x[0]`
      for a batch).
    - `y`, `cost`: also check `cost(readout(u, x), y)` when both are given.
    - `key`: PRNG key (default `jr.key(0)`).
    - `num_circles`, `num_points`, `radius`: sampling of the tests (per function
      and per group of leaves; the circle's `num_points`-point rule must resolve
      the first Fourier coefficient to `rtol`, so keep `radius` small).
    - `rtol`: allowed relative mismatch (default 1e-6 in float64, 1e-2 in float32).

    **Raises:** `holoode.NotHolomorphicError` naming the function, the argument
    (the state or a parameter leaf) and the test that failed; `ValueError` if `x`
    does not fit the model (e.g. a batch instead of one example).
    """
    key = jr.key(0) if key is None else key
    params = eqx.filter(model, eqx.is_inexact_array)
    rdtype = real_dtype(tree_dtype(params))
    rtol = default_tolerance(rdtype, "holomorphy") if rtol is None else rtol
    x = jnp.asarray(x)
    _check_example(model, x, y, cost)
    n_state = len(jtu.tree_leaves(jax.eval_shape(model.init_state, x)))
    paths = _leaf_paths(params)
    groups = ["the state u"] + [f"the parameter model{path}" for path in paths]
    masks = np.zeros((len(groups), n_state + len(paths)), bool)
    masks[0, :n_state] = True
    for i in range(len(paths)):
        masks[1 + i, n_state + i] = True
    masks = tuple(tuple(bool(m) for m in row) for row in masks)
    samples = _samples(model, x, y, cost, key, len(groups), num_circles, rdtype)
    results = _run_tests(model, x, y, cost, samples, masks, num_points, radius)
    for name, (cr, cauchy) in results.items():
        for g, label in enumerate(groups):
            for test, value in (
                ("Cauchy–Riemann", float(cr[g])),
                ("Cauchy-integral", float(cauchy[g])),
            ):
                if not np.isfinite(value) or value > rtol:
                    raise NotHolomorphicError(
                        f"{type(model).__name__}.{name} is not holomorphic in {label}: "
                        f"the {test} test is off by {value:.2e} (relative; "
                        f"allowed {rtol:.0e}). {_FIX}"
                    )


def _check_example(model, x, y, cost) -> None:
    """`x` must be one example: a batch would fail deep inside the model, or give
    non-scalar functions that the tests cannot judge."""
    hint = (
        f"check_holomorphic takes one example without a batch axis; for a batch "
        f"`x` of shape {x.shape}, pass `x[0]`"
        + (" (and `y[0]`)" if y is not None else "")
        + "."
    )
    try:
        state = jax.eval_shape(model.init_state, x)
        weights = [jnp.zeros(a.shape, a.dtype) for a in jtu.tree_leaves(state)]
        shapes = jax.eval_shape(
            lambda: {
                name: fn((model.init_state(x), eqx.filter(model, eqx.is_inexact_array)))
                for name, fn in _functions(model, x, y, cost, weights).items()
            }
        )
    except Exception as e:
        raise ValueError(
            f"check_holomorphic: `x` of shape {x.shape} does not fit "
            f"{type(model).__name__} ({type(e).__name__}: {str(e).rstrip('.')}). "
            + hint
        ) from e
    for name, out in shapes.items():
        if out.shape != ():
            raise ValueError(
                f"check_holomorphic: {type(model).__name__}.{name} returned shape "
                f"{out.shape} for `x` of shape {x.shape}, not a scalar. " + hint
            )
