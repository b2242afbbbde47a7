"""The equilibrium-solver protocol."""

import abc
import contextlib
import math
import operator
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx
from jaxtyping import Array, Int, PyTree

from .._misc import default_tolerance, tree_dtype
from .._solution import Equilibrium, RESULTS


VectorField = Callable[[PyTree[Array]], PyTree[Array]]


class AbstractEquilibriumSolver(eqx.Module):
    """Finds a zero `u*` of a vector field `f` (the network's `du/dt`).

    One protocol for every way of finding an equilibrium: running the dynamics to
    steady state, Newton-type root finding, fixed-point iteration. The state may be
    real or complex; the field is holomorphic in it.

    `rtol`/`atol` of `None` mean: the default for the state's dtype (1e-10 for
    64-bit, 1e-6 for 32-bit), so that float64 gradients are limited by a tight
    tolerance rather than by loose defaults.
    """

    rtol: eqx.AbstractVar[float | None]
    atol: eqx.AbstractVar[float | None]
    max_steps: eqx.AbstractVar[int]

    def __check_init__(self):
        check_settings(self)

    @abc.abstractmethod
    def solve(
        self, vector_field: VectorField, u0: PyTree[Array], *, differentiable: bool
    ) -> Equilibrium:
        """Solve `vector_field(u) = 0` starting from `u0`.

        **Arguments:**

        - `vector_field`: the field `f(u)` (a PyTree of arrays, like `u0`).
        - `u0`: the starting state (warm start).
        - `differentiable`: if `True`, reverse-mode gradients must flow through the
          solver's iterations (backprop through time); otherwise the caller stops
          gradients and the solver may use the cheapest loop.

        **Returns:** a `holoode.Equilibrium`.
        """

    def solve_many(
        self,
        field_of: Callable[[PyTree[Array]], VectorField],
        u0: PyTree[Array],
        args: PyTree[Array],
        *,
        differentiable: bool,
    ) -> Equilibrium:
        """Solve a batch: example `b` is `field_of(args[b])(u) = 0` from `u0[b]`
        (leading axes). The default is `jax.vmap` of `solve`; a solver may run the
        batch in one loop of its own, with the same result per example."""

        def one(a, u):
            return self.solve(field_of(a), u, differentiable=differentiable)

        return jax.vmap(one)(args, u0)

    def tolerances(self, u0: PyTree[Array]) -> tuple[float, float]:
        dtype = tree_dtype(u0)
        rtol = default_tolerance(dtype) if self.rtol is None else self.rtol
        atol = default_tolerance(dtype) if self.atol is None else self.atol
        return rtol, atol


def check_settings(solver) -> None:
    """Refuse solver settings that cannot give a correct equilibrium, naming the
    field: tolerances must be non-negative and not both zero, `max_steps` a
    positive integer, a step size in `(0, 2)` (beyond 2 the damped map
    `u + η f(u)` diverges even for the best-conditioned networks; 0 never moves)."""
    name = type(solver).__name__
    for field in ("rtol", "atol"):
        value = getattr(solver, field)
        if value is not None and not (
            isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
        ):
            raise ValueError(
                f"{name}({field}={value!r}): tolerances must be finite numbers ≥ 0 "
                f"(or None for the dtype's default), e.g. `{name}({field}=1e-6)`."
            )
    if solver.rtol == 0 and solver.atol == 0:
        raise ValueError(
            f"{name}(rtol=0, atol=0) can never be met: give at least one positive "
            f"tolerance, e.g. `{name}(rtol=1e-6, atol=1e-6)`."
        )
    try:
        max_steps = operator.index(solver.max_steps)
    except TypeError:
        max_steps = None
    if max_steps is None or max_steps < 1:
        raise ValueError(
            f"{name}(max_steps={solver.max_steps!r}) must be an integer ≥ 1, e.g. "
            f"`{name}(max_steps=1000)`."
        )
    step_size = getattr(solver, "step_size", None)
    if step_size is not None and not (
        isinstance(step_size, (int, float)) and 0 < step_size < 2
    ):
        raise ValueError(
            f"{name}(step_size={step_size!r}) must lie in (0, 2): the map "
            "`u + step_size·f(u)` does not move at 0 and diverges beyond 2. "
            f"Use e.g. `{name}(step_size=0.5)`."
        )


def split(u: PyTree[Array]) -> tuple[PyTree[Array], PyTree[Array]]:
    """Represent a complex PyTree as a pair of real PyTrees `(Re u, Im u)`."""
    return (jtu.tree_map(jnp.real, u), jtu.tree_map(jnp.imag, u))


def merge(parts: tuple[PyTree[Array], PyTree[Array]]) -> PyTree[Array]:
    """Inverse of `split`."""
    re, im = parts
    return jtu.tree_map(lambda a, b: a + 1j * b, re, im)


class SplitField(eqx.Module):
    """The field `(Re f(a + ib), Im f(a + ib))` on the real pair `(a, b)`."""

    field: VectorField

    def __call__(self, parts):
        return split(self.field(merge(parts)))


def real_view(vector_field: VectorField, u0, split_complex: bool):
    """Return `(field, y0, to_state)` for solving on real numbers if asked to.

    If `split_complex` and `u0` is complex, the solver sees the real pair; otherwise
    the problem is passed through unchanged.
    """
    if split_complex and any(jnp.iscomplexobj(x) for x in jtu.tree_leaves(u0)):
        return SplitField(vector_field), split(u0), merge
    return vector_field, u0, lambda y: y


@contextlib.contextmanager
def complex_checked():
    """Silence Diffrax's and Optimistix's generic 'complex support is a work in
    progress' warnings: holoode's tests compare every solver on complex states with
    the same solver on split real/imaginary parts (`split_complex=True`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Complex .*support in (Diffrax|Optimistix)"
        )
        yield


def optimistix_solve(
    entry,
    fn,
    solver,
    vector_field: VectorField,
    u0,
    *,
    split_complex: bool,
    max_steps: int,
    differentiable: bool,
) -> Equilibrium:
    """Run an Optimistix entry point (`optx.root_find` or `optx.fixed_point`) on
    `fn(u, field)`, with the state split into real pairs if asked to, and
    package the result."""
    adjoint = (
        optx.RecursiveCheckpointAdjoint() if differentiable else optx.ImplicitAdjoint()
    )
    field, y0, to_state = real_view(vector_field, u0, split_complex)
    with complex_checked():
        sol = entry(
            fn,
            solver,
            y0,
            args=field,
            max_steps=max_steps,
            adjoint=adjoint,
            throw=False,
        )
    result = promote(sol.result)
    return finish(vector_field, to_state(sol.value), sol.stats["num_steps"], result)


def promote(result: optx.RESULTS) -> RESULTS:
    """An Optimistix result as a `holoode.RESULTS`; running out of steps is the
    same cause whichever library's loop ran."""
    result = RESULTS.promote(result)
    out_of_steps = result == RESULTS.nonlinear_max_steps_reached
    return RESULTS.where(out_of_steps, RESULTS.max_steps_reached, result)


def finish(
    vector_field: VectorField,
    value: PyTree[Array],
    num_steps: Int[Array, ""],
    result: RESULTS,
) -> Equilibrium:
    """Package a solver's output: its own result (promoted to `holoode.RESULTS`,
    which keeps the cause), or `nonfinite` where the state or its residual is."""
    residual = optx.rms_norm(vector_field(value))
    finite = jnp.all(
        jnp.array([jnp.all(jnp.isfinite(x)) for x in jtu.tree_leaves(value)])
    ) & jnp.isfinite(residual)
    result = RESULTS.where(finite, result, RESULTS.nonfinite)
    return Equilibrium(value, jnp.asarray(num_steps), residual, result)
