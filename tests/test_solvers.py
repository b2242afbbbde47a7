"""Every solver and every rule give the same gradient; complex states agree with
their real/imaginary split."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx
import pytest

import holoode as ho

from .helpers import data, mlp, QuarticHopfield, reference, rel_error, RULES, SOLVERS


# The ODE solver compiles the slowest of the four: its cases are marked slow.
SOLVER_CASES = [
    pytest.param(
        s,
        id=repr(s)[:60],
        marks=[pytest.mark.slow] if isinstance(s, ho.SteadyStateODE) else [],
    )
    for s in SOLVERS
]


@pytest.mark.parametrize("solver", SOLVER_CASES)
@pytest.mark.parametrize("rule", RULES, ids=lambda r: repr(r)[:60])
def test_every_solver_and_rule_agree(rule, solver):
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    grads, info = ho.gradient(rule, model, x, y, cost=cost, solver=solver)
    assert bool(info.all_reached)
    # Equilibria to 1e-10; hEP with 12 points at |β| = 0.1 aliases at ~1e-9.
    assert rel_error(grads, reference(model, x, y, cost)) < 1e-7


def test_energy_form_with_every_rule():
    model = QuarticHopfield(key=jr.key(0))
    x, y = data(4, 3, labels=False)
    cost = ho.SquaredError()
    ref = reference(model, x, y, cost)
    for rule in [ho.ImplicitDifferentiation(), ho.HolomorphicEP(0.1, 12)]:
        grads, _ = ho.gradient(rule, model, x, y, cost=cost, solver=ho.RootFind())
        assert rel_error(grads, ref) < 1e-7, rule


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        lambda split: ho.SteadyStateODE(split_complex=split),
        lambda split: ho.RootFind(split_complex=split),
        lambda split: ho.FixedPointIteration(step_size=0.5, split_complex=split),
        lambda split: ho.AndersonAcceleration(split_complex=split),
    ],
)
def test_complex_state_equals_split_state(make):
    # The nudged equilibria of holomorphic EP (complex β) solved on complex
    # states and on their real/imaginary split agree. (Not step for step: an
    # RMS norm over n complex entries is √2 times the one over their 2n parts.)
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    u0 = ho.initial_states(model, x)
    free = ho.solve_batch(ho.RootFind(), model, x, y, cost, 0.0, u0).value
    start = jax.tree_util.tree_map(lambda u: u.astype(jnp.complex128), free)
    betas = ho.circle_points(0.3, 6)

    @eqx.filter_jit
    def nudged(solver):
        return ho.solve_points(solver, model, x, y, cost, betas, start, chain=False)

    a, b = nudged(make(False)), nudged(make(True))
    assert bool(jnp.all(a.result == ho.RESULTS.successful))
    assert bool(jnp.all(b.result == ho.RESULTS.successful))
    assert rel_error(a.value, b.value) < 1e-9


@pytest.mark.slow
def test_implicit_ode_solver_on_split_states():
    import diffrax as dfx

    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    solver = ho.SteadyStateODE(
        solver=dfx.Kvaerno5(),
        split_complex=True,
        stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-8),
    )
    grads, _ = ho.gradient(
        ho.HolomorphicEP(0.1, 8), model, x, y, cost=cost, solver=solver
    )
    assert rel_error(grads, reference(model, x, y, cost)) < 1e-6


@pytest.mark.slow
def test_neighbour_warm_start_matches_free_warm_start():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    rules = [ho.HolomorphicEP(0.3, 8, warm_start=w) for w in ("free", "neighbour")]
    a, b = (
        ho.gradient(r, model, x, y, cost=cost, solver=ho.RootFind())[0] for r in rules
    )
    assert rel_error(a, b) < 1e-9


@pytest.mark.slow
def test_float32_works():

    model64, (x64, y) = mlp(), data()
    model = eqx.tree_at(
        lambda m: (m.weights, m.biases),
        model64,
        jax.tree_util.tree_map(
            lambda a: a.astype(jnp.float32), (model64.weights, model64.biases)
        ),
    )
    x = x64.astype(jnp.float32)
    ref = reference(model64, x64, y, ho.CrossEntropy())
    for rule, solver in [
        (ho.ImplicitDifferentiation(), None),
        (ho.HolomorphicEP(0.1, 6), None),
        (ho.HolomorphicEP(0.1, 6), ho.FixedPointIteration(step_size=0.5)),
    ]:
        grads, info = ho.gradient(
            rule, model, x, y, cost=ho.CrossEntropy(), solver=solver
        )
        assert grads.weights[0].dtype == jnp.float32
        assert bool(info.all_reached)
        assert rel_error(grads, ref) < 1e-3, rule


def test_anderson_gives_up_on_a_stalled_solve():
    # A field with no zero: the step (absolute tolerance only) never shrinks.
    # Anderson stops once its step has not halved for 150 iterations (so that a
    # batch does not wait for it until `max_steps`) and reports the failure as
    # Optimistix's `nonlinear_divergence` (the cause kept, not "out of steps").
    solver = ho.AndersonAcceleration(rtol=0.0, atol=1e-6, max_steps=2000)
    sol = solver.solve(
        lambda u: jnp.ones_like(u) + 0.0 * u, jnp.zeros(3), differentiable=False
    )
    assert sol.result == ho.RESULTS.nonlinear_divergence
    assert 150 <= int(sol.num_steps) <= 160


def test_root_find_reports_the_tolerances_of_the_solver_it_runs():
    u = jnp.zeros(3, jnp.float64)
    assert ho.RootFind().tolerances(u) == (1e-10, 1e-10)
    chord = ho.RootFind(solver=optx.Chord(rtol=1e-3, atol=1e-4))
    assert chord.tolerances(u) == (1e-3, 1e-4)
    with pytest.raises(ValueError, match="its own tolerances apply"):
        ho.RootFind(rtol=1e-6, solver=optx.Chord(rtol=1e-3, atol=1e-4))


def test_solve_rows_solves_the_selected_examples_in_chunks():
    # 11 examples in chunks of ⌈11/8⌉ = 2: the 6 selected ones take three chunks,
    # the last padded. Each selected example gets the same equilibrium as in a
    # solve of the whole batch; the others keep their start and 0 steps.
    from holoode._equilibrium.batched import initial_states, solve_batch, solve_rows

    model, (x, y), cost = mlp(), data(batch=11), ho.CrossEntropy()
    u0 = initial_states(model, x)
    rows = jnp.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1], bool)
    ode = ho.SteadyStateODE(rtol=1e-8, atol=1e-8)
    values, steps = jax.jit(lambda u: solve_rows(ode, model, x, y, cost, u, rows))(u0)
    whole = solve_batch(ode, model, x, y, cost, 0.0, u0)
    for got, want, start in zip(
        jax.tree.leaves(values), jax.tree.leaves(whole.value), jax.tree.leaves(u0)
    ):
        np.testing.assert_allclose(got[rows], want[rows], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(got[~rows], start[~rows])
    np.testing.assert_array_equal(steps[rows], whole.num_steps[rows])
    assert not np.any(steps[~rows])


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_anderson_keeps_the_gram_matrix_of_its_history(dtype):
    # The Gram matrix ΔRᴴΔR is updated one row per step and the histories are
    # stored as real rows (Re, Im); after more steps than the memory holds, both
    # must equal the Gram matrix and the mixing computed from scratch.
    from holoode._equilibrium.anderson import FixedPointLoop

    n, memory = 7, 4
    k1, k2, k3 = jr.split(jr.key(3), 3)
    a = 0.9 * jr.orthogonal(k1, n) @ jnp.diag(jnp.linspace(0.1, 1.0, n))
    b = jr.normal(k2, (n,))
    if jnp.issubdtype(dtype, jnp.complexfloating):
        a, b = a * jnp.exp(0.3j), b + 1j * jr.normal(k3, (n,))
    fn = lambda u, _: (a @ u + b, None)  # noqa: E731
    loop = FixedPointLoop(rtol=1e-30, atol=1e-30, memory=memory)
    u = jnp.zeros(n, dtype)
    state = loop.init(fn, u, None, {}, None, None, frozenset())
    iterates, images = [], []
    for _ in range(memory + 3):
        iterates.append(u)
        images.append(fn(u, None)[0])
        u, state, _ = loop.step(fn, u, None, {}, state, frozenset())
    g = jnp.stack(images[-memory:][::-1])  # newest first
    r = g - jnp.stack(iterates[-memory:][::-1])
    d_r, d_g = r[:-1] - r[1:], g[:-1] - g[1:]
    rows = state.residual_differences[:, :n]
    if jnp.iscomplexobj(d_r):
        rows = rows + 1j * state.residual_differences[:, n:]
    np.testing.assert_allclose(rows, d_r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state.gram, d_r.conj() @ d_r.T, rtol=1e-10)
    # The step taken: g_k − ΔG γ with γ the least-squares coefficients.
    gamma = jnp.linalg.lstsq(d_r.T, r[0])[0]
    np.testing.assert_allclose(u, g[0] - gamma @ d_g, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-8])
def test_anderson_tolerance_bounds_the_distance_to_the_equilibrium(tol):
    # A linear map with slowly contracting directions (eigenvalues up to 0.99,
    # as the synchronous update of the paper's MNIST network at initialisation):
    # Anderson's steps shrink much faster than the map contracts, so a stop on
    # the step alone leaves the state 5–12 tolerances away. The tolerance bounds
    # the distance itself (scaled like the stopping test).
    n = 200
    q = jr.orthogonal(jr.key(0), n, dtype=jnp.float64)
    slow = jnp.array([0.99, 0.985, 0.98, 0.975, 0.97])
    eigenvalues = jnp.concatenate([jnp.linspace(-0.5, 0.9, n - 5), slow])
    jac = q @ jnp.diag(eigenvalues) @ q.T
    b = jr.normal(jr.key(1), (n,), jnp.float64)
    exact = jnp.linalg.solve(jnp.eye(n) - jac, b)
    solver = ho.AndersonAcceleration(rtol=tol, atol=tol, memory=10, max_steps=5000)
    sol = solver.solve(lambda u: jac @ u + b - u, jnp.zeros(n), differentiable=False)
    assert sol.result == ho.RESULTS.successful
    scaled = (sol.value - exact) / (tol + tol * jnp.abs(exact))
    assert float(jnp.sqrt(jnp.mean(scaled**2))) < 2


@pytest.mark.parametrize(
    "solver",
    [
        ho.AndersonAcceleration(memory=4, max_steps=19),
        ho.AndersonAcceleration(memory=4, max_steps=30, split_complex=True),
        ho.FixedPointIteration(step_size=0.5, max_steps=100),
    ],
    ids=["anderson", "anderson-split", "fixed-point"],
)
@pytest.mark.parametrize("beta", [0.0, 0.4 * np.exp(0.7j)], ids=["real", "complex"])
def test_a_batch_in_one_loop_matches_each_example_alone(solver, beta):
    # `solve_many` runs the batch in one loop of its own, the last few examples
    # (here 2 of 10) on their own: per example the same iterates, step counts and
    # results as `solve` (an Optimistix loop) under `vmap`, including examples
    # stopped by `max_steps` and a non-finite one.
    model, (x, y), cost = mlp(gain=3.0), data(batch=10), ho.CrossEntropy()
    x = x.at[4, 0].set(jnp.nan)
    u0 = ho.initial_states(model, x)
    dtype = jnp.result_type(jnp.float64, beta)
    u0 = jax.tree_util.tree_map(lambda u: u.astype(dtype), u0)

    def field_of(args):
        x_b, y_b = args
        return eqx.Partial(model.vector_field, x=x_b, y=y_b, beta=beta, cost=cost)

    def alone(args, u):
        return solver.solve(field_of(args), u, differentiable=False)

    many = jax.jit(
        lambda u: solver.solve_many(field_of, u, (x, y), differentiable=False)
    )(u0)
    each = jax.jit(jax.vmap(alone))((x, y), u0)
    np.testing.assert_array_equal(many.result._value, each.result._value)
    results = set(np.asarray(many.result._value).tolist())
    codes = {int(ho.RESULTS.successful._value), int(ho.RESULTS.nonfinite._value)}
    assert codes <= results  # (and `max_steps_reached` in all but one case)
    steps = np.sort(np.asarray(many.num_steps))
    assert steps[-3] < steps[-2]  # the last two went on alone
    finite = np.asarray(many.result != ho.RESULTS.nonfinite)
    np.testing.assert_array_equal(
        np.asarray(many.num_steps)[finite], np.asarray(each.num_steps)[finite]
    )
    for a, b in zip(jax.tree_util.tree_leaves(many), jax.tree_util.tree_leaves(each)):
        if jnp.issubdtype(a.dtype, jnp.inexact):
            np.testing.assert_allclose(
                np.asarray(a)[finite], np.asarray(b)[finite], rtol=1e-10, atol=1e-12
            )
    # A batch of one runs to the end too.
    one = solver.solve_many(
        field_of, jax.tree_util.tree_map(lambda u: u[:1], u0), (x[:1], y[:1]),
        differentiable=False,
    )  # fmt: skip
    assert int(one.num_steps[0]) == int(each.num_steps[0])
