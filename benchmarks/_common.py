"""Helpers shared by the benchmark scripts."""

import os
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
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


def rel_error(grads, reference: np.ndarray) -> float:
    """Relative L2 error of `grads` against a flat float64 `reference`."""
    return float(np.linalg.norm(flat(grads) - reference) / np.linalg.norm(reference))


def cast_model(model, dtype):
    """`model` with its inexact array leaves cast to `dtype`."""
    return jtu.tree_map(
        lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model
    )


def versions() -> dict:
    """The versions of the stack, for result records."""
    import diffrax
    import jaxlib
    import optimistix

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "equinox": eqx.__version__,
        "optimistix": optimistix.__version__,
        "lineax": lx.__version__,
        "diffrax": diffrax.__version__,
        "numpy": np.__version__,
        "holoode": holoode.__version__,
    }


def machine() -> dict:
    """The machine a result was measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
    }
