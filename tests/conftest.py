import os


# Compile time dominates this suite: its programs are small and run for
# milliseconds, but each takes seconds to compile. So XLA skips most of its
# optimisation passes (the programs compute the same values, compiled in about
# half the time; a user's `jit` keeps them). Set before JAX starts, and
# inherited by the processes the tests start (CLI, tutorials, multi-process
# training).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(items):
    # Slow tests first (the order is otherwise kept): with `-n 2` the long ones
    # then run side by side on both workers and the short ones fill the gaps,
    # instead of one long test finishing the run alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
