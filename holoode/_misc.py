"""Small PyTree and dtype utilities shared by the rest of the package."""

import operator

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree


def complex_dtype(dtype) -> jnp.dtype:
    """The complex dtype with the precision of the real or complex `dtype`."""
    return jnp.result_type(dtype, jnp.complex64)


def real_dtype(dtype) -> jnp.dtype:
    """The real dtype with the precision of the real or complex `dtype`."""
    return jnp.finfo(dtype).dtype


def tree_dtype(tree: PyTree) -> jnp.dtype:
    """The common inexact dtype of the array leaves of `tree` (float32 if none)."""
    leaves = [x for x in jtu.tree_leaves(tree) if eqx.is_inexact_array(x)]
    if not leaves:
        return jnp.dtype(jnp.float32)
    return jnp.result_type(*leaves)


def tree_isfinite(tree: PyTree) -> Array:
    """Whether every entry of every array leaf of `tree` is finite (`True` for a
    tree without array leaves)."""
    leaves = [a for a in jtu.tree_leaves(tree) if eqx.is_array(a)]
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(a)) for a in leaves] or [True]))


def tree_astype(tree: PyTree, dtype) -> PyTree:
    return jtu.tree_map(lambda a: jnp.asarray(a).astype(dtype), tree)


def tree_norm(tree: PyTree) -> Array:
    """The Euclidean norm of all leaves of `tree` together (complex-aware)."""
    leaves = jtu.tree_leaves(tree)
    if not leaves:
        return jnp.array(0.0)
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves))


def tree_vdot(a: PyTree, b: PyTree) -> Array:
    """`Σ conj(a)·b` over all leaves of two PyTrees of the same structure."""
    return sum(
        (jnp.vdot(u, v) for u, v in zip(jtu.tree_leaves(a), jtu.tree_leaves(b))),
        start=jnp.array(0.0),
    )


# Every default tolerance, by purpose: (64-bit, 32-bit).
# - "equilibrium": the distance to the equilibrium (solvers, adjoint solves):
#   float64 results are limited by it only at ~1e-10; 1e-6 is reachable above
#   float32 round-off (eps ~ 1.2e-7) and keeps holomorphic EP's default within
#   1e-2 of the exact gradient on the paper's MNIST network.
# - "continuation": `stability_map`'s allowed mismatch between a state found and
#   the analytic continuation's prediction, on top of the prediction's error.
# - "holomorphy": `check_holomorphic`'s allowed relative mismatch between a
#   directional derivative and its finite-difference estimate.
TOLERANCES = {
    "equilibrium": (1e-10, 1e-6),
    "continuation": (1e-6, 1e-3),
    "holomorphy": (1e-6, 1e-2),
}


def default_tolerance(dtype, purpose: str = "equilibrium") -> float:
    """The default tolerance for `purpose` (a key of `TOLERANCES`) in `dtype`."""
    wide, narrow = TOLERANCES[purpose]
    return wide if real_dtype(dtype) == jnp.float64 else narrow


def eps(dtype) -> float:
    return float(jnp.finfo(real_dtype(dtype)).eps)


def stop_gradient(tree: PyTree) -> PyTree:
    """`lax.stop_gradient` on the array leaves of `tree`; other leaves pass through."""
    return jtu.tree_map(
        lambda a: jax.lax.stop_gradient(a) if eqx.is_array(a) else a, tree
    )


def as_int(value):
    """Accept NumPy and JAX integer scalars where an `int` is expected (a field
    converter; anything else is left for the class's own check to refuse)."""
    try:
        return operator.index(value)
    except TypeError:
        return value
