import jax


jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(items):
    # Slow tests first (the order is otherwise kept): with `-n 2` the long ones
    # then run side by side on both workers and the short ones fill the gaps,
    # instead of one long test finishing the run alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
