import os


# Compile time dominates this suite: its programs are small and run for
# milliseconds, but each takes seconds to compile. So XLA skips most of its
# optimisation passes, and its CPU backend generates the code of fused
# operations with its element-wise emitters rather than the fusion emitters:
# the programs compute the same values and compile several times faster (a
# user's `jit` keeps XLA's defaults). Set before JAX starts, and inherited by
# the processes the tests start (CLI, tutorials, multi-process training).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
_FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"
if _FAST_COMPILE.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}"

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(items):
    # Slow tests first (the order is otherwise kept): with `-n 2` the long ones
    # then run side by side on both workers and the short ones fill the gaps,
    # instead of one long test finishing the run alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
