"""A numerical check that a model is holomorphic where holomorphic EP needs it."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
from jaxtyping import Array, PRNGKeyArray

from ._costs import AbstractCost
from ._misc import complex_dtype, real_dtype, tree_astype, tree_dtype
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


@eqx.filter_jit
def _test_function(fn, args, masks, key, num_circles, num_points, radius):
    """Worst Cauchy–Riemann and Cauchy-integral mismatches of scalar `fn(args)`
    along random directions restricted to the leaves selected by `masks`."""
    leaves, treedef = jtu.tree_flatten(args)

    def one(k):
        k1, k2, k3 = jr.split(k, 3)
        # A fresh real centre per circle, so that seams (e.g. of `maximum` at 0) are
        # crossed by some circle with high probability.
        centre = [
            a
            + jnp.where(
                m, jr.normal(kk, a.shape, real_dtype(a.dtype)) * (jnp.std(a) + 0.1), 0
            ).astype(a.dtype)
            for m, a, kk in zip(masks, leaves, jr.split(k3, len(leaves)))
        ]
        dirs = [
            jnp.where(m, jr.normal(kk, leaf.shape, real_dtype(leaf.dtype)), 0).astype(
                leaf.dtype
            )
            for m, leaf, kk in zip(masks, leaves, jr.split(k1, len(leaves)))
        ]
        # A unit direction (over all tested entries together): the circle's radius
        # is then absolute, whatever the size of the arrays; per-entry unit
        # directions would put a large weight matrix's circle √size too far out,
        # where the trapezoidal rule's aliasing error exceeds the tolerance.
        norm = jnp.sqrt(sum(jnp.sum(jnp.abs(d) ** 2) for d in dirs))
        norm = jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)  # empty leaves
        dirs = [d / norm.astype(d.dtype) for d in dirs]
        offs = [
            jnp.where(m, jr.normal(kk, leaf.shape, real_dtype(leaf.dtype)), 0).astype(
                leaf.dtype
            )
            for m, leaf, kk in zip(masks, leaves, jr.split(k2, len(leaves)))
        ]
        f = lambda ls: fn(jtu.tree_unflatten(treedef, ls))  # noqa: E731
        floor = jnp.sqrt(jnp.finfo(real_dtype(leaves[0].dtype)).eps) * (
            1.0 + jnp.abs(f(leaves))
        )
        # Cauchy–Riemann at a complex point: J(iv) = i J(v) for holomorphic f.
        z = [a + 0.3j * o for a, o in zip(centre, offs)]
        _, jv = jax.jvp(f, (z,), (dirs,))
        _, jiv = jax.jvp(f, (z,), ([1j * d for d in dirs],))
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
        _, jv0 = jax.jvp(f, (centre,), (dirs,))
        cauchy = _mismatch(first, jv0, floor / radius)
        return cr, cauchy

    cr, cauchy = jax.vmap(one)(jr.split(key, num_circles))
    return jnp.max(cr), jnp.max(cauchy)


def check_holomorphic(
    model: AbstractEquilibriumModel,
    x: Array,
    y=None,
    *,
    cost: AbstractCost | None = None,
    key: PRNGKeyArray | None = None,
    num_circles: int = 32,
    num_points: int = 16,
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

    Caveat: a numerical check, not a proof; a seam far from the sampled points
    can go unnoticed.

    **Arguments:**

    - `model`: the model; `x`: one example's input (no batch axis).
    - `y`, `cost`: also check `cost(readout(u, x), y)` when both are given.
    - `key`: PRNG key (default `jr.key(0)`).
    - `num_circles`, `num_points`, `radius`: sampling of the tests.
    - `rtol`: allowed relative mismatch (default 1e-6 in float64, 1e-2 in float32).

    **Raises:** `holoode.NotHolomorphicError` naming the function, the argument
    (the state or a parameter leaf) and the test that failed.
    """
    key = jr.key(0) if key is None else key
    params, static = eqx.partition(model, eqx.is_inexact_array)
    rdtype = real_dtype(tree_dtype(params))
    cdtype = complex_dtype(rdtype)
    rtol = (1e-6 if rdtype == jnp.float64 else 1e-2) if rtol is None else rtol
    u0 = model.init_state(x)
    u0 = jtu.tree_map(
        lambda a, k: (a + jr.normal(k, a.shape, rdtype)).astype(cdtype),
        u0,
        jtu.tree_unflatten(
            jtu.tree_structure(u0), list(jr.split(key, len(jtu.tree_leaves(u0))))
        ),
    )
    params_c = tree_astype(params, cdtype)

    functions = {}
    if isinstance(model, AbstractEnergyModel):
        functions["energy(u, x)"] = lambda a: eqx.combine(a[1], static).energy(a[0], x)
    elif isinstance(model, AbstractPrimitiveModel):
        functions["primitive(u, x)"] = lambda a: eqx.combine(a[1], static).primitive(
            a[0], x
        )
        w = jtu.tree_map(lambda a: jr.normal(jr.fold_in(key, 1), a.shape, rdtype), u0)
        functions["activation(a)"] = lambda a: sum(
            jnp.sum(wi * si)
            for wi, si in zip(
                jtu.tree_leaves(w),
                jtu.tree_leaves(eqx.combine(a[1], static).activation(a[0])),
            )
        )
    if cost is not None and y is not None:
        functions["cost(readout(u, x), y)"] = lambda a: eqx.combine(a[1], static).loss(
            a[0], x, y, cost
        )

    args = (u0, params_c)
    n_state = len(jtu.tree_leaves(u0))
    n_leaves = len(jtu.tree_leaves(args))
    groups = [("the state u", list(range(n_state)))]
    for i, path in enumerate(_leaf_paths(params_c)):
        groups.append((f"the parameter model{path}", [n_state + i]))
    for f_index, (name, fn) in enumerate(functions.items()):
        for g, (label, idx) in enumerate(groups):
            # Masks are arrays, so each function compiles once for all groups.
            masks = [jnp.asarray(i in idx) for i in range(n_leaves)]
            cr, cauchy = _test_function(
                fn,
                args,
                masks,
                jr.fold_in(key, 1000 * f_index + g),
                num_circles,
                num_points,
                radius,
            )
            for test, value in (("Cauchy–Riemann", cr), ("Cauchy-integral", cauchy)):
                if not bool(jnp.isfinite(value)) or float(value) > rtol:
                    raise NotHolomorphicError(
                        f"{type(model).__name__}.{name} is not holomorphic in {label}: "
                        f"the {test} test is off by {float(value):.2e} (relative; "
                        f"allowed {rtol:.0e}). {_FIX}"
                    )
