import os
import shutil
import tempfile


# Compile time dominates this suite: its programs are small and run for
# milliseconds, but each takes seconds to compile. So, before JAX starts (and
# for every process the tests start, which inherit the environment):
# - XLA skips most of its optimisation passes (the programs compute the same
#   values; a user's `jit` keeps them);
# - compiled programs are shared through a persistent cache, one per test run
#   (the pytest workers and the subprocesses of the CLI, tutorial and
#   multi-process tests compile many of the same programs). A cache directory
#   set by the caller is respected.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # Set in the main pytest process, inherited by its workers and subprocesses,
    # removed at the end of the run.
    CACHE = tempfile.mkdtemp(prefix="holoode-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(items):
    # Slow tests first (the order is otherwise kept): with `-n 2` the long ones
    # then run side by side on both workers and the short ones fill the gaps,
    # instead of one long test finishing the run alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session):
    if CACHE is not None and not hasattr(session.config, "workerinput"):
        shutil.rmtree(CACHE, ignore_errors=True)
