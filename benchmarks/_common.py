"""Helpers shared by the benchmark scripts."""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

import holoode


def digits(batch: int, seed: int = 0, dtype=jnp.float64):
    """`batch` of scikit-learn's 8×8 digits (shipped inside scikit-learn), drawn
    without replacement with `seed`, flattened and scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.target), batch, replace=False)
    x = jnp.asarray(data.data[idx] / 16.0, dtype)
    y = jnp.asarray(data.target[idx], jnp.int32)
    return x, y


def flat(tree) -> np.ndarray:
    """The array leaves of a PyTree, concatenated into one float64 vector."""
    leaves = jtu.tree_leaves(eqx.filter(tree, eqx.is_array))
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in leaves])


def result_name(result) -> str:
    """The `holoode.RESULTS` member's name, for JSON records."""
    for name in (
        "successful",
        "max_steps_reached",
        "nonfinite",
        "continuation_lost",
        "nonfinite_gradient",
    ):
        if bool(result == getattr(holoode.RESULTS, name)):
            return name
    return "unknown"


def timed(fn):
    """`(fn(), seconds)`, waiting for the result's computation to finish."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start
