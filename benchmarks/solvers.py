"""Every equilibrium solver × every learning rule: time, field evaluations and
error against the exact gradient (benchmarks/README.md, "Solver choice")."""

import _harness as h
import jax


jax.config.update("jax_enable_x64", True)

import diffrax as dfx
import equinox as eqx
import lineax as lx
import numpy as np
import optimistix as optx

import holoode


BETA, PERIOD, TOL = 0.1, 100.0, 1e-10  # TOL: the library's float64 default
ODE, CHORD = holoode.SteadyStateODE, optx.Chord(rtol=TOL, atol=TOL, norm=optx.rms_norm)
EULER = dict(stepsize_controller=dfx.ConstantStepSize(), dt0=0.5, max_steps=20_000)
# Kvaerno5 is L-stable, so a loose step-size controller is safe: the steady-state
# event still stops at the tolerance (holoode.SteadyStateODE's docstring).
PID = dfx.PIDController(rtol=1e-4, atol=1e-4, norm=optx.rms_norm)
SOLVERS = {
    "Euler": lambda: ODE(dfx.Euler(), **EULER),
    "Heun": lambda: ODE(dfx.Heun()),
    "Tsit5": lambda: ODE(dfx.Tsit5()),
    "Dopri5": lambda: ODE(dfx.Dopri5()),
    "Kvaerno5": lambda: ODE(
        dfx.Kvaerno5(), split_complex=True, stepsize_controller=PID
    ),
    "Newton": holoode.RootFind,
    "Chord": lambda: holoode.RootFind(solver=CHORD),
    "FixedPoint": holoode.FixedPointIteration,
    "Anderson": holoode.AndersonAcceleration,
}
ODE_SOLVERS = ("Euler", "Heun", "Tsit5", "Dopri5", "Kvaerno5")
RULES = {f"hEP N={n}": lambda n=n: holoode.HolomorphicEP(BETA, n) for n in (2, 4, 10)}
RULES["EP one-sided"] = lambda: holoode.ClassicEP(BETA)
RULES["continuous hEP"] = lambda: holoode.ContinuousHEP(BETA, period=PERIOD)
RULES["implicit"] = holoode.ImplicitDifferentiation
# Field evaluations per step, per solve, and a dense Jacobian (n JVPs) every step
# or once. Runge-Kutta: 1, 2 or 6 new stages (Tsit5, Dopri5: FSAL) and the event
# per step; per solve the event at t0, an FSAL stage and holoode's final residual.
# Kvaerno5 does not report its stage iterations: counted (`count_evaluations`,
# also `--check-counts` for every solver).
EVALS = {
    "Euler": (2, 2, None),
    "Heun": (3, 2, None),
    "Tsit5": (7, 3, None),
    "Dopri5": (7, 3, None),
    "Kvaerno5": (None, 0, "step"),
    "Newton": (1, 1, "step"),
    "Chord": (1, 1, "once"),
    "FixedPoint": (1, 1, None),
    "Anderson": (1, 1, None),
}
# ContinuousHEP runs the driven dynamics (field + learning signal) without an
# event, over a warm-up and one period: stages per step only.
CONTINUOUS_STAGES = {"Heun": 2, "Tsit5": 6, "Dopri5": 6}


class _Counted(eqx.Module):
    field: eqx.Module
    counter: list = eqx.field(static=True)

    def __call__(self, u):  # a host callback runs once per primal evaluation
        jax.debug.callback(lambda: self.counter.__setitem__(0, self.counter[0] + 1))
        return self.field(u)


class _Counting(holoode.AbstractEquilibriumSolver):
    """Wraps a solver so that every evaluation of the field (not its JVPs) is
    counted on the host."""

    inner: holoode.AbstractEquilibriumSolver
    counter: list = eqx.field(static=True)
    rtol = property(lambda self: self.inner.rtol)
    atol = property(lambda self: self.inner.atol)
    max_steps = property(lambda self: self.inner.max_steps)

    def solve(self, vector_field, u0, *, differentiable):
        field = _Counted(vector_field, self.counter)
        return self.inner.solve(field, u0, differentiable=differentiable)


def count_evaluations(name, model, x, y, cost):
    """`(evaluations, steps)` of one free-phase solve of one example, counted."""
    counter, rule = [0], holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    solver = _Counting(SOLVERS[name](), counter)
    _, info = holoode.gradient(
        rule, model, x[:1], y[:1], cost=cost, solver=solver, throw=False
    )
    jax.effects_barrier()
    return counter[0], int(np.asarray(info.num_steps).sum())


def evaluations(solver, rule, steps, state_size, kvaerno_per_step):
    """Field evaluations per example (mean over the batch), JVPs counted as one
    evaluation each; `steps` is `info.num_steps`, shape `(batch, solves)`."""
    steps = np.asarray(steps, dtype=float)
    if rule == "continuous hEP":
        return float(steps.mean() * CONTINUOUS_STAGES.get(solver, np.nan))
    per_step, per_solve, jacobian = EVALS[solver]
    per_step = kvaerno_per_step if per_step is None else per_step
    # hEP with N ≥ 3 solves complex nudged states; Kvaerno5 splits them into real
    # pairs, so its Jacobians are twice as wide there.
    complex_cols = np.zeros(steps.shape[1], bool)
    complex_cols[1:] = rule.startswith("hEP") and int(rule.split("=")[1]) >= 3
    n = np.where(complex_cols & (solver == "Kvaerno5"), 2 * state_size, state_size)
    jac = {"step": n * steps, "once": n * np.ones_like(steps), None: 0 * steps}
    total = per_step * steps + per_solve + jac[jacobian]
    return float(total.sum(axis=1).mean())


def pairs(args):
    if args.rules or args.solvers:
        rules = args.rules.split(",") if args.rules else list(RULES)
        solvers = args.solvers.split(",") if args.solvers else list(SOLVERS)
        if unknown := (set(rules) - set(RULES)) | (set(solvers) - set(SOLVERS)):
            raise SystemExit(f"unknown {sorted(unknown)}: see {[*RULES, *SOLVERS]}")
        out = [(r, s) for r in rules for s in solvers]
    elif args.all or args.full:
        out = [(r, s) for r in RULES for s in SOLVERS]
    else:  # a cross: every solver with hEP N=4, every rule with FixedPoint
        out = [("hEP N=4", s) for s in SOLVERS]
        out += [(r, "FixedPoint") for r in RULES if r != "hEP N=4"]
        out += [("continuous hEP", "Tsit5")]
    # ContinuousHEP integrates in time: only the Diffrax solvers apply.
    return [(r, s) for r, s in out if r != "continuous hEP" or s in ODE_SOLVERS]


def measure(args):
    size = ((64, 128, 128, 10), 128) if args.full else ((64, 32, 32, 10), 16)
    model, x, y, cost, reference = h.digits_problem(args, *size)
    repeats, todo = args.repeats or (10 if args.full else 5), pairs(args)
    print(f"solvers: {len(todo)} pairs", flush=True)
    # Kvaerno5's evaluations per step are measured; with --check-counts every
    # solver's formula is checked against a counted free-phase solve.
    counted = {}
    for name in SOLVERS if args.check_counts else {s for _, s in todo} & {"Kvaerno5"}:
        evals, steps = count_evaluations(name, model, x, y, cost)
        per_step, per_solve, jacobian = EVALS[name]
        formula = per_step and per_step * steps + per_solve + (jacobian == "once")
        counted[name] = dict(counted=evals, steps=steps, formula=formula)
        print(f"  counted {name}: {evals} evaluations in {steps} steps", flush=True)
    kvaerno = counted.get("Kvaerno5")  # the final residual aside; JVPs added later
    kvaerno_per_step = kvaerno and (kvaerno["counted"] - 1) / kvaerno["steps"]

    def call(rule, solver):
        rule, solver = RULES[rule](), SOLVERS[solver]()
        return lambda: holoode.gradient(
            rule, model, x, y, cost=cost, solver=solver, throw=False
        )

    calls = {f"{r} | {s}": call(r, s) for r, s in todo}
    rows = []
    for (rule, solver), t in zip(todo, h.interleaved(calls, repeats, 3.0).values()):
        rows.append(row := dict(rule=rule, solver=solver) | t)  # repeats until 3 s
        if "out" in row:
            (grads, info), n = row.pop("out"), sum(args.sizes[1:-1])
            steps, result = np.asarray(info.num_steps), h.result_name(info.result)
            evals = evaluations(solver, rule, steps, n, kvaerno_per_step)
            row |= dict(rel_error=h.rel_error(grads, reference), field_evals=evals)
            row |= dict(result=result, error_estimate=float(info.error_estimate))
            row |= dict(steps_mean=steps.sum(1).mean(), steps_max=steps.max(0).tolist())
    settings = dict(sizes=args.sizes, batch=args.batch, dtype="float64", beta=BETA)
    settings |= dict(continuous_period=PERIOD, tolerance=TOL, repeats=repeats)
    settings |= dict(evals_per_method=EVALS, continuous_stages=CONTINUOUS_STAGES)
    settings |= dict(kvaerno5_evals_per_step=kvaerno_per_step, full=args.full)
    return dict(settings=settings, counted=counted, rows=rows)


def markdown(record) -> str:
    s, m = record["settings"], record["machine"]
    row = "{rule};{solver};{compile_s:.1f};{ms:.1f};{field_evals:.0f};{rel_error:.1e};"
    rows = [
        [r["rule"], r["solver"], "", "", "", "", r["error"]]
        if "error" in r
        else (row + "{result}").format(**r, ms=1e3 * r["time_s"]).split(";")
        for r in sorted(record["rows"], key=lambda r: (r["rule"], r.get("time_s", 1e9)))
    ]
    columns = "rule,solver,compile [s],time/call [ms],field evals / example,rel. error"
    text = [
        f"HopfieldMLP{tuple(s['sizes'])}, batch {s['batch']}, {s['dtype']}, "
        f"|β| = {s['beta']}, tolerance {s['tolerance']:g}; "
        f"{m.get('backend') or m['jax_backend']}, {m['cpu_count']} CPUs, "
        f"jax {record.get('versions', m)['jax']}. Time: median of up to "
        f"{s['repeats']} calls; evaluations: per example, JVPs counted as one.\n",
        h.table([*columns.split(","), "result"], rows, "llrrrrl"),
        "",
    ]
    return "\n".join(text + summary(record))


def summary(record) -> list[str]:
    """Per rule, the fastest, the cheapest and the most accurate successful solver;
    per solver, the rules fastest first (generated: the docs type no number)."""
    rows = [r for r in record["rows"] if r.get("result") == "successful"]
    solvers = dict.fromkeys(r["solver"] for r in rows)  # in the order of the run
    rows, out = sorted(rows, key=lambda r: r["time_s"]), []
    for rule in dict.fromkeys(r["rule"] for r in record["rows"]):
        mine = [r for r in rows if r["rule"] == rule]
        failed = [r["solver"] for r in record["rows"] if r["rule"] == rule]
        failed = [s for s in failed if s not in {r["solver"] for r in mine}]
        if len(mine) < 2:
            continue
        fast, slow = mine[0], mine[-1]
        cheap = min(mine, key=lambda r: r["field_evals"])
        exact = min(mine, key=lambda r: r["rel_error"])
        out.append(
            f"- **{rule}**: fastest {fast['solver']} ({1e3 * fast['time_s']:.1f} ms, "
            f"{slow['time_s'] / fast['time_s']:.0f}× faster than the slowest, "
            f"{slow['solver']}); fewest evaluations {cheap['solver']} "
            f"({cheap['field_evals']:.0f}); most accurate {exact['solver']} "
            f"({exact['rel_error']:.1e}, the fastest: {fast['rel_error']:.1e})"
            + (f"; not successful: {', '.join(failed)}" if failed else "")
            + "."
        )
    for solver in solvers:
        mine = [r for r in rows if r["solver"] == solver]
        base = next((r for r in mine if r["rule"] == "implicit"), None)
        parts = [
            f"{r['rule']} {1e3 * r['time_s']:.1f} ms"
            + (f" ({r['time_s'] / base['time_s']:.2g}× implicit)" if base else "")
            + f", error {r['rel_error']:.1e}"
            for r in mine
        ]
        if len(mine) > 1:
            out.append(f"- **rules with {solver}**, fastest first: " + "; ".join(parts))
    return out


def plot(record):
    from matplotlib.patches import Patch

    rows = [r for r in record["rows"] if "error" not in r]
    fig, (axes,) = h.figure(1, 2, size=(13, 5), sharey=True)
    colors = dict(zip(SOLVERS, [f"C{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]))
    markers = dict(zip(RULES, "os^Dv*"))
    for ax, key, scale in ((axes[0], "time_s", 1e3), (axes[1], "field_evals", 1)):
        for r in rows:
            fill = None if r["result"] == "successful" else "none"
            kw = dict(color=colors[r["solver"]], marker=markers[r["rule"]], s=50)
            error = max(r["rel_error"], 1e-16)
            ax.scatter(scale * r[key], error, facecolors=fill, **kw)
        ax.set(xscale="log", yscale="log")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set(xlabel="time per gradient call [ms] (median)")
    axes[0].set(ylabel="relative gradient error vs exact")
    axes[1].set(xlabel="field evaluations per example")
    handles = [Patch(color=colors[s], label=s) for s in SOLVERS]
    handles += [
        axes[1].scatter([], [], c="k", marker=markers[r], label=r) for r in RULES
    ]
    shown = {r["solver"] for r in rows} | {r["rule"] for r in rows}
    handles = [x for x in handles if x.get_label() in shown]
    kw = dict(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    axes[1].legend(handles=handles, **kw)
    s, title = record["settings"], "Accuracy vs cost: HopfieldMLP"
    title += f"{tuple(s['sizes'])}, batch {s['batch']}, float64, |β| = {s['beta']}"
    fig.suptitle(title + " (hollow: result not successful)")
    return fig


def main(argv=None):
    p = h.parser(__doc__, full=True, sizes=True)
    p.add_argument("--all", action="store_true", help="every pair, small size")
    p.add_argument("--rules", default=None, help="comma-separated subset")
    p.add_argument("--solvers", default=None, help="comma-separated subset")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--check-counts", action="store_true", help="count evaluations")
    report = lambda record: (markdown(record), plot(record))
    return h.run("solvers", p, measure, report, argv)


if __name__ == "__main__":
    main()
