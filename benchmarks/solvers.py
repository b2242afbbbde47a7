"""Solver choice: every equilibrium solver × every learning rule, side by side.

For one model and one batch, each (rule, solver) pair is timed through
`holoode.gradient` and compared with the exact gradient:

- **compile** — first call minus the steady-state median (tracing + XLA compile);
- **time/call** — median of `--repeats` calls after a warm-up call, the rows
  interleaved round-robin so that background load hits every row alike;
- **field evaluations** per example — from `info.num_steps` (solver steps per
  solve, rejected steps included) times the evaluations each step costs, plus
  the per-solve start-up evaluations (see `EVALS` below for each method's
  count and `--check-counts` for a measured check);
- **rel. error** — `‖g − g*‖ / ‖g*‖` against implicit differentiation with a
  dense LU adjoint at an equilibrium solved by Newton to 1e-12, in float64.

Model: `holoode.nn.HopfieldMLP((64, 32, 32, 10))` (shifted sigmoid, float64) on a
batch of 16 of scikit-learn's 8×8 digits (scaled to [0, 1]), cross-entropy.
Every solver runs at the library's default tolerance for the dtype (1e-10 in
float64), so the error column shows what each combination delivers out of the box.

Rules: `HolomorphicEP(0.1, N)` for N = 2, 4, 10; `ClassicEP(0.1)` (one-sided;
the symmetric estimate is hEP with N = 2); `ContinuousHEP(0.1, period=100)` (only
with the ODE solvers: it integrates the dynamics itself); and
`ImplicitDifferentiation()` (default GMRES adjoint).

Solvers: `holoode.SteadyStateODE` with Diffrax's Euler (constant step 0.5), Heun,
Tsit5, Dopri5 (PID step-size control at the steady-state tolerance) and Kvaerno5
(implicit, on real/imaginary parts, PID at 1e-4: being L-stable it may take large
steps), each stopped by the steady-state event; `holoode.RootFind()` (Optimistix
Newton, dense LU) and `holoode.RootFind(solver=optx.Chord(...))`;
`holoode.FixedPointIteration()`; `holoode.AndersonAcceleration()`.

The default runs a cross through the matrix (every solver with hEP N = 4, every
rule with FixedPoint, continuous hEP with Tsit5): 14 pairs, dominated by compile
time (a few minutes on 2 CPU cores). `--all` runs the whole matrix at the same
size; `--full` the whole matrix on a larger network and batch (meant for a GPU).

Usage:

    python -m benchmarks.solvers                 # default cross (small)
    python -m benchmarks.solvers --all           # every pair, small size
    python -m benchmarks.solvers --full          # every pair, GPU size
    python -m benchmarks.solvers --rules "hEP N=4" --solvers Tsit5,Newton
    python -m benchmarks.solvers --out DIR       # where solvers.json/.md/.png go
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


try:
    import holoode
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import holoode


try:
    from ._common import digits, flat, result_name, timed
except ImportError:  # run as a script
    from _common import digits, flat, result_name, timed

import jax


jax.config.update("jax_enable_x64", True)

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optimistix as optx


BETA = 0.1
PERIOD = 100.0
TIME_PER_ROW = 3.0  # seconds of repeated calls after which a row stops
ODE_SOLVERS = ("Euler", "Heun", "Tsit5", "Dopri5", "Kvaerno5")


def make_solver(name: str, tol: float):
    """The equilibrium solver called `name`, at tolerance `tol`."""
    ode = holoode.SteadyStateODE
    return {
        "Euler": lambda: ode(
            solver=dfx.Euler(),
            stepsize_controller=dfx.ConstantStepSize(),
            dt0=0.5,
            max_steps=20_000,
        ),
        "Heun": lambda: ode(solver=dfx.Heun()),
        "Tsit5": lambda: ode(solver=dfx.Tsit5()),
        "Dopri5": lambda: ode(solver=dfx.Dopri5()),
        # L-stable, so a loose step-size controller is safe: the steady-state event
        # still stops at `tol` (holoode.SteadyStateODE's docstring).
        "Kvaerno5": lambda: ode(
            solver=dfx.Kvaerno5(),
            split_complex=True,
            stepsize_controller=dfx.PIDController(
                rtol=1e-4, atol=1e-4, norm=optx.rms_norm
            ),
        ),
        "Newton": lambda: holoode.RootFind(),
        "Chord": lambda: holoode.RootFind(
            solver=optx.Chord(rtol=tol, atol=tol, norm=optx.rms_norm)
        ),
        "FixedPoint": lambda: holoode.FixedPointIteration(),
        "Anderson": lambda: holoode.AndersonAcceleration(),
    }[name]()


SOLVERS = (*ODE_SOLVERS, "Newton", "Chord", "FixedPoint", "Anderson")

RULES = {
    "hEP N=2": lambda: holoode.HolomorphicEP(BETA, 2),
    "hEP N=4": lambda: holoode.HolomorphicEP(BETA, 4),
    "hEP N=10": lambda: holoode.HolomorphicEP(BETA, 10),
    "EP one-sided": lambda: holoode.ClassicEP(BETA),
    "continuous hEP": lambda: holoode.ContinuousHEP(BETA, period=PERIOD),
    "implicit": lambda: holoode.ImplicitDifferentiation(),
}

# Field evaluations per step and per solve, and whether the method forms a dense
# Jacobian (n JVPs, n = entries of the solved vector) every step or once.
# Explicit Runge-Kutta: Euler 1 stage, Heun 2, Tsit5 and Dopri5 7 stages of which
# the last is reused (FSAL), so 6 new; the steady-state event evaluates the field
# once more per step. Per solve: the event at t0, the first stage of FSAL methods,
# and the residual holoode computes at the end of every solve. Newton linearises
# the field every step (one evaluation plus n JVPs); Chord forms the Jacobian once.
# Kvaerno5 solves its stage equations by a chord method whose iterations are not
# reported, so its evaluations per step are counted (`count_evaluations`). Every
# formula was checked against counted evaluations (`--check-counts`).
EVALS = {
    "Euler": dict(per_step=2, per_solve=2, jacobian=None),
    "Heun": dict(per_step=3, per_solve=2, jacobian=None),
    "Tsit5": dict(per_step=7, per_solve=3, jacobian=None),
    "Dopri5": dict(per_step=7, per_solve=3, jacobian=None),
    "Kvaerno5": dict(per_step=None, per_solve=0, jacobian="step"),
    "Newton": dict(per_step=1, per_solve=1, jacobian="step"),
    "Chord": dict(per_step=1, per_solve=1, jacobian="once"),
    "FixedPoint": dict(per_step=1, per_solve=1, jacobian=None),
    "Anderson": dict(per_step=1, per_solve=1, jacobian=None),
}
# ContinuousHEP runs the driven dynamics (field + learning signal) without an
# event, over a warm-up and one period: stages per step only.
CONTINUOUS_STAGES = {"Heun": 2, "Tsit5": 6, "Dopri5": 6}


def machine() -> dict:
    return dict(
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        python=platform.python_version(),
        jax=jax.__version__,
        diffrax=dfx.__version__ if hasattr(dfx, "__version__") else None,
        optimistix=optx.__version__ if hasattr(optx, "__version__") else None,
        backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()],
        load_average=list(os.getloadavg()),
    )


class _CountedField(eqx.Module):
    field: eqx.Module
    counter: list = eqx.field(static=True)

    def __call__(self, u):
        # A host callback with no arguments runs once per primal evaluation; the
        # JVPs of a Jacobian do not run it (they are added from `EVALS`).
        jax.debug.callback(lambda: self.counter.__setitem__(0, self.counter[0] + 1))
        return self.field(u)


class _Counting(holoode.AbstractEquilibriumSolver):
    """Wraps a solver so that every evaluation of the field is counted on the host."""

    inner: holoode.AbstractEquilibriumSolver
    counter: list = eqx.field(static=True)

    @property
    def rtol(self):
        return self.inner.rtol

    @property
    def atol(self):
        return self.inner.atol

    @property
    def max_steps(self):
        return self.inner.max_steps

    def solve(self, vector_field, u0, *, differentiable):
        counted = _CountedField(vector_field, self.counter)
        return self.inner.solve(counted, u0, differentiable=differentiable)


def count_evaluations(name, model, x, y, cost, tol):
    """Measured field evaluations of one free-phase solve of one example.

    Returns `(evaluations, steps)`: primal evaluations only, JVPs not included."""
    counter = [0]
    solver = _Counting(make_solver(name, tol), counter)
    _, info = holoode.gradient(
        holoode.ImplicitDifferentiation(linear_solver=lx.LU()),
        model,
        x[:1],
        y[:1],
        cost=cost,
        solver=solver,
        throw=False,
    )
    jax.effects_barrier()
    return counter[0], int(np.asarray(info.num_steps).sum())


def evaluations(solver, rule, num_steps, state_size, kvaerno_per_step):
    """Field evaluations per example (mean over the batch), JVPs counted as one
    evaluation each. `num_steps` is `info.num_steps`, shape `(batch, solves)`."""
    steps = np.asarray(num_steps, dtype=float)
    if rule == "continuous hEP":
        return float(steps.mean() * CONTINUOUS_STAGES.get(solver, np.nan))
    spec = EVALS[solver]
    per_step = kvaerno_per_step if spec["per_step"] is None else spec["per_step"]
    # hEP with N ≥ 3 solves complex nudged states; Kvaerno5 splits them into real
    # pairs, so its Jacobians are twice as wide there.
    complex_cols = np.zeros(steps.shape[1], bool)
    if rule.startswith("hEP") and int(rule.split("=")[1]) >= 3:
        complex_cols[1:] = True
    n = np.where(complex_cols & (solver == "Kvaerno5"), 2 * state_size, state_size)
    jac = {"step": n * steps, "once": n * np.ones_like(steps), None: 0 * steps}
    total = per_step * steps + spec["per_solve"] + jac[spec["jacobian"]]
    return float(total.sum(axis=1).mean())


def pairs(args):
    if args.rules or args.solvers:
        rules = args.rules.split(",") if args.rules else list(RULES)
        solvers = args.solvers.split(",") if args.solvers else list(SOLVERS)
        unknown = (set(rules) - set(RULES)) | (set(solvers) - set(SOLVERS))
        if unknown:
            raise SystemExit(
                f"unknown rules/solvers {sorted(unknown)}; choose from "
                f"{list(RULES)} and {list(SOLVERS)}"
            )
        out = [(r, s) for r in rules for s in solvers]
    elif args.all or args.full:
        out = [(r, s) for r in RULES for s in SOLVERS]
    else:
        out = [("hEP N=4", s) for s in SOLVERS]
        out += [(r, "FixedPoint") for r in RULES if r != "hEP N=4"]
        out += [("continuous hEP", "Tsit5")]
    # ContinuousHEP integrates in time: only the Diffrax solvers apply.
    return [(r, s) for r, s in out if r != "continuous hEP" or s in ODE_SOLVERS]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="every pair, GPU size")
    size.add_argument("--all", action="store_true", help="every pair, small size")
    parser.add_argument("--rules", default=None, help="comma-separated subset")
    parser.add_argument("--solvers", default=None, help="comma-separated subset")
    parser.add_argument("--sizes", default=None, help="e.g. 64,32,32,10")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--check-counts",
        action="store_true",
        help="also count field evaluations with a host callback for every solver",
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="output folder (default benchmarks/results)",
    )
    parser.add_argument(
        "--replot", action="store_true", help="redraw .md/.png from the JSON in --out"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        record = json.loads((out / "solvers.json").read_text())
        (out / "solvers.md").write_text(markdown(record))
        plot(record, out / "solvers.png")
        return record
    start = time.perf_counter()
    if args.full:
        sizes, batch, repeats = (64, 128, 128, 10), 128, 10
    else:
        sizes, batch, repeats = (64, 32, 32, 10), 16, 5
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    batch = args.batch or batch
    repeats = args.repeats or repeats
    dtype, tol = jnp.float64, 1e-10
    todo = pairs(args)
    model = holoode.nn.HopfieldMLP(sizes, key=jr.key(0), dtype=dtype)
    x, y = digits(batch, dtype=dtype)
    # Smoke tests use a smaller network: the first pixels, labels modulo classes.
    x, y = x[:, : sizes[0]], y % sizes[-1]
    cost = holoode.CrossEntropy()
    state_size = sum(sizes[1:-1])
    machine_info = machine()
    print(
        f"solvers benchmark: HopfieldMLP{sizes}, batch {batch}, float64, "
        f"{len(todo)} pairs, load average {machine_info['load_average'][0]:.2f}",
        flush=True,
    )

    newton = holoode.RootFind(rtol=1e-12, atol=1e-12)
    exact_rule = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    reference = flat(
        holoode.gradient(exact_rule, model, x, y, cost=cost, solver=newton)[0]
    )

    # Kvaerno5's evaluations per step are measured; with --check-counts every
    # solver's formula is checked against a counted free-phase solve.
    needed = {s for _, s in todo if EVALS[s]["per_step"] is None}
    counted = {}
    for name in SOLVERS if args.check_counts else sorted(needed):
        evals, steps = count_evaluations(name, model, x, y, cost, tol)
        spec = EVALS[name]
        predicted = (
            None
            if spec["per_step"] is None
            else spec["per_step"] * steps
            + spec["per_solve"]
            + (1 if spec["jacobian"] == "once" else 0)
        )
        counted[name] = dict(counted=evals, steps=steps, formula=predicted)
        print(f"  counted {name}: {evals} evaluations in {steps} steps", flush=True)
    kvaerno_per_step = None
    if "Kvaerno5" in counted:
        c = counted["Kvaerno5"]
        # Counted: primal evaluations (the final residual aside); the Jacobian's
        # JVPs are added per step in `evaluations`.
        kvaerno_per_step = (c["counted"] - 1) / c["steps"]

    rows = []
    for rule_name, solver_name in todo:
        rule = RULES[rule_name]()
        solver = make_solver(solver_name, tol)

        def call(rule=rule, solver=solver):
            return holoode.gradient(
                rule, model, x, y, cost=cost, solver=solver, throw=False
            )

        row = dict(rule=rule_name, solver=solver_name)
        try:
            (grads, info), first = timed(call)
        except Exception as e:  # a combination the library refuses: say why
            row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0]}")
            print(f"{rule_name:15s} {solver_name:10s} refused: {row['error']}")
            rows.append(row)
            continue
        g = flat(grads)
        row.update(
            first_call_s=first,
            rel_error=float(np.linalg.norm(g - reference) / np.linalg.norm(reference)),
            result=result_name(info.result),
            steps_mean=float(np.asarray(info.num_steps).sum(axis=1).mean()),
            steps_max_per_solve=np.asarray(info.num_steps).max(axis=0).tolist(),
            field_evals=evaluations(
                solver_name, rule_name, info.num_steps, state_size, kvaerno_per_step
            ),
            error_estimate=float(info.error_estimate),
            call=call,
            times_s=[],
        )
        print(
            f"{rule_name:15s} {solver_name:10s} first call {first:6.2f} s  "
            f"error {row['rel_error']:.2e}  {row['result']}",
            flush=True,
        )
        rows.append(row)

    timed_rows = [r for r in rows if "call" in r]
    print(f"steady state: {repeats} interleaved rounds ...", flush=True)
    for i in range(repeats):
        for row in timed_rows:
            # Slow rows stop once they have spent TIME_PER_ROW, to bound the run.
            if i == 0 or sum(row["times_s"]) < TIME_PER_ROW:
                row["times_s"].append(timed(row["call"])[1])
    for row in timed_rows:
        row["time_s"] = statistics.median(row["times_s"])
        row["compile_s"] = max(row["first_call_s"] - row["time_s"], 0.0)
        del row["call"]

    elapsed = time.perf_counter() - start
    record = dict(
        benchmark="solvers",
        command="python -m benchmarks.solvers " + " ".join(argv or sys.argv[1:]),
        settings=dict(
            sizes=sizes,
            batch=batch,
            dtype="float64",
            beta=BETA,
            continuous_period=PERIOD,
            tolerance=tol,
            repeats=repeats,
            repeats_rule=f"at least 1, then until {TIME_PER_ROW} s per row",
            data="sklearn digits, [0, 1]",
            reference="ImplicitDifferentiation(lineax.LU()), RootFind(1e-12)",
            evals_per_method=EVALS,
            continuous_stages=CONTINUOUS_STAGES,
            kvaerno5_evals_per_step=kvaerno_per_step,
            state_size=state_size,
            full=args.full,
        ),
        counted=counted,
        rows=rows,
        wall_time_s=elapsed,
        machine=machine_info,
        load_average_end=list(os.getloadavg()),
    )
    (out / "solvers.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "solvers.md").write_text(markdown(record))
    plot(record, out / "solvers.png")
    print(markdown(record))
    print(f"wrote {out}/solvers.json, .md, .png ({elapsed:.0f} s)")
    return record


def markdown(record) -> str:
    s = record["settings"]
    lines = [
        f"HopfieldMLP{tuple(s['sizes'])}, batch {s['batch']}, {s['dtype']}, "
        f"|β| = {s['beta']}, tolerance {s['tolerance']:g}; "
        f"{record['machine']['backend']}, {record['machine']['cpu_count']} CPUs, "
        f"jax {record['machine']['jax']}. Time: median of up to {s['repeats']} calls; "
        "evaluations: per example, JVPs counted as one.",
        "",
        "| rule | solver | compile [s] | time/call [ms] | field evals / example "
        "| rel. error | result |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in sorted(record["rows"], key=lambda r: (r["rule"], r.get("time_s", 1e9))):
        if "error" in r:
            lines.append(f"| {r['rule']} | {r['solver']} | | | | | {r['error']} |")
            continue
        lines.append(
            f"| {r['rule']} | {r['solver']} | {r['compile_s']:.1f} | "
            f"{1e3 * r['time_s']:.1f} | {r['field_evals']:.0f} | "
            f"{r['rel_error']:.1e} | {r['result']} |"
        )
    return "\n".join(lines + [""] + summary(record)) + "\n"


def summary(record) -> list[str]:
    """Per rule, the fastest, the cheapest and the most accurate successful solver,
    generated from the rows so that the docs never type a number by hand."""
    rows = [r for r in record["rows"] if r.get("result") == "successful"]
    out = []
    for rule in dict.fromkeys(r["rule"] for r in record["rows"]):
        mine = [r for r in rows if r["rule"] == rule]
        failed = [
            r["solver"]
            for r in record["rows"]
            if r["rule"] == rule and r.get("result") != "successful"
        ]
        if len(mine) < 2:
            continue
        fast = min(mine, key=lambda r: r["time_s"])
        cheap = min(mine, key=lambda r: r["field_evals"])
        exact = min(mine, key=lambda r: r["rel_error"])
        slow = max(mine, key=lambda r: r["time_s"])
        out.append(
            f"- **{rule}**: fastest {fast['solver']} ({1e3 * fast['time_s']:.1f} ms, "
            f"{slow['time_s'] / fast['time_s']:.0f}× faster than the slowest, "
            f"{slow['solver']}); fewest evaluations {cheap['solver']} "
            f"({cheap['field_evals']:.0f}); most accurate {exact['solver']} "
            f"({exact['rel_error']:.1e}, the fastest: {fast['rel_error']:.1e})"
            + (f"; not successful: {', '.join(failed)}" if failed else "")
            + "."
        )
    for solver in dict.fromkeys(r["solver"] for r in rows):
        mine = sorted(
            (r for r in rows if r["solver"] == solver), key=lambda r: r["time_s"]
        )
        if len(mine) < 2:
            continue
        base = next((r for r in mine if r["rule"] == "implicit"), None)
        parts = [
            f"{r['rule']} {1e3 * r['time_s']:.1f} ms"
            + (f" ({r['time_s'] / base['time_s']:.2g}× implicit)" if base else "")
            + f", error {r['rel_error']:.1e}"
            for r in mine
        ]
        out.append(f"- **rules with {solver}**, fastest first: " + "; ".join(parts))
    return out


def plot(record, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = [r for r in record["rows"] if "error" not in r]
    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    cmap = dict(zip(SOLVERS, [f"C{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]))
    markers = dict(zip(RULES, "os^Dv*"))
    for ax, key, label in (
        (axes[0], "time_s", "time per gradient call [ms] (median)"),
        (axes[1], "field_evals", "field evaluations per example"),
    ):
        for r in rows:
            value = 1e3 * r[key] if key == "time_s" else r[key]
            ok = r["result"] == "successful"
            ax.scatter(
                value,
                max(r["rel_error"], 1e-16),
                color=cmap[r["solver"]],
                marker=markers[r["rule"]],
                s=50,
                facecolors=None if ok else "none",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("relative gradient error vs exact")
    present_s = dict.fromkeys(r["solver"] for r in rows)
    present_r = dict.fromkeys(r["rule"] for r in rows)
    handles = [Patch(color=cmap[s], label=s) for s in present_s] + [
        axes[1].scatter([], [], color="black", marker=markers[r], label=r)
        for r in present_r
    ]
    axes[1].legend(
        handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5)
    )
    s = record["settings"]
    fig.suptitle(
        f"Accuracy vs cost: HopfieldMLP{tuple(s['sizes'])}, batch {s['batch']}, "
        f"float64, |β| = {s['beta']} (hollow: result not successful)"
    )
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
