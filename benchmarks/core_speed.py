"""Core speed: holomorphic EP against the paper's fixed-step schedule, side by side.

Measures, in one run and on one machine, the time per `holoode.gradient` call of
holomorphic EP (N = 10 and N = 2) and of implicit differentiation, and the time
of a re-implementation of the schedule of Laborieux & Zenke (2022): the
synchronous map `u ← u + f(u) = σ(∂(Φ − βC)/∂u)` iterated a fixed 200 free steps,
then 50 steps at each of the N points `β_k = |β| e^{2πik/N}` (all N, one after
another, each warm-started from the previous point), in complex arithmetic, with
the gradient `Re Σ_k ∂F/∂θ(u_k, β_k) e^{−iφ_k} / (N|β|)`. Every method is one
jitted program with compiled loops.

Model: `holoode.nn.HopfieldMLP((784, 256, 256, 10))` in float32 (shifted sigmoid),
batch 20, MNIST-shaped random inputs in [0, 1], integer labels, cross-entropy.

Each row reports: compile time (first call minus the steady-state median),
steady-state median time per call (calls interleaved across rows, so background
load hits every row alike), the relative L2 error of the gradient against a
float64 reference (implicit differentiation, fixed-point solve to 1e-12, dense
LU adjoint, cross-checked against a second solve), and the total solver steps
(`info.num_steps` summed over batch and solves).

The equilibrium tolerance (rtol = atol) of each solver is swept; a row "matches"
the paper's schedule if its gradient error is at most the schedule's error at the
same N (with 1% slack for float32 round-off), and the loosest matching tolerance
is the one compared with the targets.

The float32 measurements run with `jax_enable_x64` off (JAX's default, what users
run: Python scalars and indices stay 32-bit); only the float64 reference is
computed inside `jax.enable_x64(True)`.

Usage:

    python benchmarks/core_speed.py            # full run (a few minutes on 2 cores)
    python benchmarks/core_speed.py --quick    # smoke size, seconds
    python benchmarks/core_speed.py --out DIR  # where core_speed.json/.png go
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
    from ._common import timed
except ImportError:  # run as a script
    from _common import timed

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
import numpy as np


# A row matches the paper's schedule if its gradient error is at most this factor
# times the schedule's error at the same N: "equal" up to 1% (float32 round-off;
# at N = 2 both estimators share the same O(β²) bias and differ only there).
MATCH_SLACK = 1.01


# ---------------------------------------------------------------------------
# The paper's schedule (baseline; deliberately not part of the library)
# ---------------------------------------------------------------------------


def make_paper_schedule(beta: float, num_points: int, free_steps: int, nudged_steps):
    """A jitted `(model, x, y, cost) -> grads` following Laborieux & Zenke (2022)."""

    @eqx.filter_jit
    def paper_gradient(model, x, y, cost):
        params, static = eqx.partition(model, eqx.is_inexact_array)
        rdtype = x.dtype
        cdtype = jnp.result_type(rdtype, jnp.complex64)

        def step(u, b):  # one synchronous update of the whole batch
            def one(u_b, x_b, y_b):
                f = model.vector_field(u_b, x_b, y_b, b, cost)
                return jtu.tree_map(jnp.add, u_b, f)

            return jax.vmap(one)(u, x, y)

        u = jax.vmap(model.init_state)(x)
        zero = jnp.zeros((), rdtype)
        u = jax.lax.fori_loop(0, free_steps, lambda i, v: step(v, zero), u)
        u = jtu.tree_map(lambda a: a.astype(cdtype), u)
        phis = 2 * jnp.pi * jnp.arange(num_points) / num_points
        betas = (beta * jnp.exp(1j * phis)).astype(cdtype)

        def point(u_prev, b):  # warm start from the previous point on the circle
            u_k = jax.lax.fori_loop(0, nudged_steps, lambda i, v: step(v, b), u_prev)
            return u_k, u_k

        _, states = jax.lax.scan(point, u, betas)  # leaves: (points, batch, ...)
        weights = (jnp.exp(-1j * phis) / (num_points * beta)).astype(cdtype)
        params_c = jtu.tree_map(lambda a: a.astype(cdtype), params)

        def signal(p):
            m = eqx.combine(p, static)

            def per_point(u_k, b_k, w_k):
                energy = jax.vmap(
                    lambda u_b, x_b, y_b: m.parameter_energy(u_b, x_b, y_b, b_k, cost)
                )(u_k, x, y)
                return w_k * jnp.mean(energy)

            return jnp.sum(jax.vmap(per_point)(states, betas, weights))

        # Holomorphic derivative: the VJP of a holomorphic scalar with cotangent 1.
        out, vjp = jax.vjp(signal, params_c)
        (grads,) = vjp(jnp.ones_like(out))
        return jtu.tree_map(lambda g, p: jnp.real(g).astype(p.dtype), grads, params)

    return paper_gradient


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def flat(tree) -> np.ndarray:
    return np.concatenate(
        [np.asarray(a, dtype=np.float64).ravel() for a in jtu.tree_leaves(tree)]
    )


def rel_error(grads, reference: np.ndarray) -> float:
    return float(np.linalg.norm(flat(grads) - reference) / np.linalg.norm(reference))


def cast_model(model, dtype):
    return jtu.tree_map(
        lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model
    )


def solver_name(solver) -> str:
    if solver is None:
        return "-"
    name = type(solver).__name__
    tol = solver.rtol
    extra = f", m={solver.memory}" if hasattr(solver, "memory") else ""
    return f"{name}(tol={tol:g}{extra})"


def versions() -> dict:
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
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
    }


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="output folder (default benchmarks/results)",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw core_speed.png from the core_speed.json in --out",
    )
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.replot:
        record = json.loads((out_dir / "core_speed.json").read_text())
        plot(record["rows"], out_dir / "core_speed.png", record["settings"])
        print(f"wrote {out_dir / 'core_speed.png'}")
        return
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    if args.quick:
        sizes, batch, repeats = (64, 32, 32, 10), 4, 5
        sweep = {10: [1e-6], 2: [1e-6]}
    else:
        sizes, batch, repeats = (784, 256, 256, 10), 20, 7
        # Equilibrium tolerances swept for hEP (both solvers); 2e-8 is about the
        # smallest step a float32 iteration reliably gets below.
        sweep = {10: [1e-5, 1e-6, 1e-7, 5e-8, 3e-8, 2e-8], 2: [1e-5, 1e-6, 1e-7, 2e-8]}
    beta = 0.4
    free_steps, nudged_steps = 200, 50
    settings = {
        "sizes": sizes,
        "batch": batch,
        "dtype": "float32",
        "activation": "shifted sigmoid 1/(1+exp(-4z+2))",
        "cost": "CrossEntropy",
        "beta": beta,
        "paper_schedule": {"free_steps": free_steps, "nudged_steps": nudged_steps},
        "repeats": repeats,
        "tolerance_sweep": {str(k): v for k, v in sweep.items()},
        "match_rule": f"rel_error <= {MATCH_SLACK} x paper schedule's rel_error",
        "hEP_warm_start": "free (points batched, conjugate symmetry)",
        "throw": False,
        "jax_enable_x64": False,
        "quick": args.quick,
    }

    key_model, key_x, key_y = jr.split(jr.key(0), 3)
    model = holoode.nn.HopfieldMLP(sizes, key=key_model, dtype=jnp.float32)
    x = jr.uniform(key_x, (batch, sizes[0]), jnp.float32)
    y = jr.randint(key_y, (batch,), 0, sizes[-1])
    cost = holoode.CrossEntropy()

    # One-time process costs (backend start, eager ops) outside every row.
    warm_model = holoode.nn.HopfieldMLP((4, 3, 2), key=jr.key(1))
    jax.block_until_ready(
        holoode.gradient(
            holoode.HolomorphicEP(beta=0.1, num_points=4),
            warm_model,
            jnp.ones((2, 4)),
            jnp.zeros((2,), int),
            cost=cost,
            solver=holoode.FixedPointIteration(),
            throw=False,
        )
    )

    # -- float64 reference ------------------------------------------------------
    print("reference (float64) ...", flush=True)
    with jax.enable_x64(True):
        model64 = cast_model(model, jnp.float64)
        x64 = x.astype(jnp.float64)
        exact = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
        tight = holoode.FixedPointIteration(rtol=1e-12, atol=1e-12, max_steps=100_000)
        (ref_grads, ref_info), ref_time = timed(
            lambda: holoode.gradient(exact, model64, x64, y, cost=cost, solver=tight)
        )
        reference = flat(ref_grads)
        checks = {}
        # A different linear solver and a tighter equilibrium...
        check_a = holoode.gradient(
            holoode.ImplicitDifferentiation(
                linear_solver=lx.GMRES(rtol=1e-13, atol=1e-13, restart=100)
            ),
            model64,
            x64,
            y,
            cost=cost,
            solver=holoode.FixedPointIteration(
                rtol=1e-13, atol=1e-13, max_steps=100_000
            ),
        )[0]
        checks["FixedPointIteration(1e-13) + GMRES(1e-13)"] = rel_error(
            check_a, reference
        )
        # ... and Newton's method (slow on this size, so only in the full run).
        if not args.quick:
            check_b = holoode.gradient(
                exact,
                model64,
                x64,
                y,
                cost=cost,
                solver=holoode.RootFind(rtol=1e-12, atol=1e-12),
            )[0]
            checks["RootFind/Newton(1e-12) + LU"] = rel_error(check_b, reference)
    reference_info = {
        "method": "ImplicitDifferentiation(lineax.LU()) in float64, "
        "FixedPointIteration(rtol=atol=1e-12)",
        "max_residual": float(np.max(np.asarray(ref_info.residual))),
        "max_steps": int(np.max(np.asarray(ref_info.num_steps))),
        "time_s": ref_time,
        "cross_checks_rel_error": checks,
    }
    print(
        f"  residual {reference_info['max_residual']:.1e}; agreement with "
        + "; ".join(f"{k}: {v:.1e}" for k, v in checks.items()),
        flush=True,
    )

    # -- rows -------------------------------------------------------------------
    rows = []

    def add_row(method, n, solver, call, *, steps_fn, group):
        print(
            f"{method:>28s} N={n!s:>2s} {solver_name(solver):40s}", end="", flush=True
        )
        (result, first) = timed(call)
        grads, steps, ok = steps_fn(result)
        row = {
            "method": method,
            "N": n,
            "solver": solver_name(solver),
            "tolerance": None if solver is None else solver.rtol,
            "group": group,
            "first_call_s": first,
            "rel_error": rel_error(grads, reference),
            "steps_total": steps["total"],
            "steps_max": steps["max"],
            "ok": ok,
            "call": call,
        }
        print(f" first call {first:6.2f} s  error {row['rel_error']:.2e}", flush=True)
        rows.append(row)
        return row

    def library_steps(result):
        grads, info = result
        num = np.asarray(info.num_steps)
        ok = bool(info.result == holoode.RESULTS.successful)
        cols = num.max(axis=0)
        # free solve first, then the nudged points (max over batch, then points)
        summary = f"{cols[0]}" + (f"+{cols[1:].max()}" if len(cols) > 1 else "")
        return grads, {"total": int(num.sum()), "max": summary}, ok

    def paper_steps(n):
        def fn(grads):
            per_example = free_steps + n * nudged_steps
            steps = {
                "total": batch * per_example,
                "max": f"{free_steps}+{n}x{nudged_steps}",
            }
            return grads, steps, True

        return fn

    paper_rows = {}
    for n in (10, 2):
        schedule = make_paper_schedule(beta, n, free_steps, nudged_steps)
        paper_rows[n] = add_row(
            "paper schedule",
            n,
            None,
            (lambda s: lambda: s(model, x, y, cost))(schedule),
            steps_fn=paper_steps(n),
            group="paper",
        )

    def library_call(rule, solver):
        return lambda: holoode.gradient(
            rule, model, x, y, cost=cost, solver=solver, throw=False
        )

    solver_types = {
        "AndersonAcceleration": lambda t: holoode.AndersonAcceleration(
            rtol=t, atol=t, memory=5
        ),
        "FixedPointIteration": lambda t: holoode.FixedPointIteration(
            rtol=t, atol=t, max_steps=1000
        ),
    }
    chosen = {}
    for n in (10, 2):
        rule = holoode.HolomorphicEP(beta=beta, num_points=n)
        for sname, make in solver_types.items():
            candidates = []
            for tol in sweep[n]:
                solver = make(tol)
                candidates.append(
                    add_row(
                        "holomorphic EP",
                        n,
                        solver,
                        library_call(rule, solver),
                        steps_fn=library_steps,
                        group="sweep",
                    )
                )
            target = MATCH_SLACK * paper_rows[n]["rel_error"]
            good = [r for r in candidates if r["ok"] and r["rel_error"] <= target]
            # loosest tolerance that matches the paper's error; else the most exact
            pick = (
                good[0]
                if good
                else min(
                    (r for r in candidates if r["ok"]), key=lambda r: r["rel_error"]
                )
            )
            pick["group"] = "chosen"
            pick["matches_paper_error"] = bool(good)
            chosen[(n, sname)] = pick

    # Implicit differentiation with the same solver as each chosen hEP row.
    implicit_rows = {}
    done = {}
    for (n, sname), pick in chosen.items():
        tol = pick["tolerance"]
        if (sname, tol) not in done:
            solver = solver_types[sname](tol)
            done[(sname, tol)] = add_row(
                "implicit differentiation",
                "-",
                solver,
                library_call(holoode.ImplicitDifferentiation(), solver),
                steps_fn=library_steps,
                group="implicit",
            )
        implicit_rows[(n, sname)] = done[(sname, tol)]

    # -- steady state: warm-up, then calls interleaved across rows ------------------
    print(f"steady state: {repeats} interleaved rounds ...", flush=True)
    for row in rows:
        jax.block_until_ready(row["call"]())
    times = {id(r): [] for r in rows}
    for _ in range(repeats):
        for row in rows:
            times[id(row)].append(timed(row["call"])[1])
    for row in rows:
        ts = times[id(row)]
        row["time_s"] = statistics.median(ts)
        row["time_min_s"] = min(ts)
        row["times_s"] = ts
        row["compile_s"] = row["first_call_s"] - row["time_s"]
        row.pop("call")
    for n in (10, 2):
        for row in rows:
            if row["N"] == n and row["method"] == "holomorphic EP":
                row["speedup_vs_paper"] = paper_rows[n]["time_s"] / row["time_s"]

    # -- targets ------------------------------------------------------------------
    targets = {}
    for sname in solver_types:
        p10, p2 = chosen[(10, sname)], chosen[(2, sname)]
        imp = implicit_rows[(2, sname)]
        targets[sname] = {
            "speedup_N10_at_matched_error": {
                "value": p10["speedup_vs_paper"],
                "target": ">= 5",
                "error_matched": p10["matches_paper_error"],
                "met": p10["matches_paper_error"] and p10["speedup_vs_paper"] >= 5,
            },
            "speedup_N2_at_matched_error": {
                "value": p2["speedup_vs_paper"],
                "target": "(reported)",
                "error_matched": p2["matches_paper_error"],
            },
            "compile_s_N10": {
                "value": p10["compile_s"],
                "target": "<= 5",
                "met": p10["compile_s"] <= 5,
            },
            "compile_s_N2": {
                "value": p2["compile_s"],
                "target": "<= 5",
                "met": p2["compile_s"] <= 5,
            },
            "N2_over_implicit": {
                "value": p2["time_s"] / imp["time_s"],
                "target": "<= 1.5",
                "met": p2["time_s"] / imp["time_s"] <= 1.5,
            },
        }

    # -- report -------------------------------------------------------------------
    table = markdown_table(rows)
    print()
    print(table)
    print()
    lines = []
    for sname, t in targets.items():
        s10 = t["speedup_N10_at_matched_error"]
        lines.append(
            f"- {sname}: N=10 speed-up vs paper {s10['value']:.2f}x "
            f"(error {'matched' if s10['error_matched'] else 'NOT matched'}; "
            f"target >= 5x: {'met' if s10['met'] else 'not met'}); "
            f"compile N=10 {t['compile_s_N10']['value']:.1f} s, "
            f"N=2 {t['compile_s_N2']['value']:.1f} s (target <= 5 s); "
            f"hEP N=2 / implicit {t['N2_over_implicit']['value']:.2f} "
            f"(target <= 1.5: {'met' if t['N2_over_implicit']['met'] else 'not met'})"
        )
    summary = "\n".join(lines)
    print(summary)
    wall = time.perf_counter() - t_start
    load_end = os.getloadavg()
    print(
        f"\nwall time {wall:.0f} s; load average at start {load_start[0]:.2f}, "
        f"at end {load_end[0]:.2f} (on {os.cpu_count()} CPUs)"
    )

    record = {
        "benchmark": "core_speed",
        "command": "python benchmarks/core_speed.py"
        + (" --quick" if args.quick else ""),
        "machine": machine(),
        "versions": versions(),
        "settings": settings,
        "reference": reference_info,
        "rows": rows,
        "targets": targets,
        "table_markdown": table,
        "summary": summary,
        "wall_time_s": wall,
        "load_average_start": load_start,
        "load_average_end": load_end,
    }
    (out_dir / "core_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(rows, out_dir / "core_speed.png", settings)
    print(f"wrote {out_dir / 'core_speed.json'} and {out_dir / 'core_speed.png'}")


def markdown_table(rows) -> str:
    header = (
        "| method | N | solver | compile [s] | time/call [ms] | (min) | vs paper | "
        "rel. grad error | solver steps total (max free+nudged) | |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    body = []
    for r in rows:
        speed = r.get("speedup_vs_paper")
        speed = (
            "1 (baseline)"
            if r["group"] == "paper"
            else (f"{speed:.2f}x" if speed is not None else "")
        )
        mark = {
            "chosen": "**matched**"
            if r.get("matches_paper_error")
            else "closest (error not matched)",
            "paper": "baseline",
            "implicit": "",
            "sweep": "",
        }[r["group"]]
        if not r["ok"]:
            mark += " (not converged)"
        body.append(
            f"| {r['method']} | {r['N']} | {r['solver']} | {r['compile_s']:.1f} | "
            f"{1e3 * r['time_s']:.1f} | {1e3 * r['time_min_s']:.1f} | {speed} | "
            f"{r['rel_error']:.2e} | "
            f"{r['steps_total']} ({r['steps_max']}) | {mark} |"
        )
    return header + "\n".join(body)


def plot(rows, path, settings):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main_rows = [r for r in rows if r["group"] in ("paper", "chosen", "implicit")]
    labels = []
    for r in main_rows:
        short = {
            "paper schedule": "paper",
            "holomorphic EP": "hEP",
            "implicit differentiation": "implicit",
        }[r["method"]]
        solver = r["solver"].split("(")[0].replace("AndersonAcceleration", "Anderson")
        solver = solver.replace("FixedPointIteration", "FixedPoint")
        tol = "" if r["tolerance"] is None else f"\ntol {r['tolerance']:g}"
        n = "" if r["N"] == "-" else f"\nN={r['N']}"
        labels.append(f"{short}{n}\n{solver if solver != '-' else ''}{tol}")
    colours = [
        {"paper": "tab:grey", "chosen": "tab:blue", "implicit": "tab:orange"}[
            r["group"]
        ]
        for r in main_rows
    ]
    fig, axes = plt.subplots(
        1, 3, figsize=(19, 5.8), gridspec_kw={"width_ratios": [1.25, 1.25, 1]}
    )
    pos = np.arange(len(main_rows))
    axes[0].bar(pos, [1e3 * r["time_s"] for r in main_rows], color=colours)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("time per gradient call [ms] (median)")
    axes[1].bar(pos, [r["rel_error"] for r in main_rows], color=colours)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("relative L2 gradient error vs float64 reference")
    for ax in axes[:2]:
        ax.set_xticks(pos)
        ax.set_xticklabels(labels, fontsize=6.5)
        ax.grid(axis="y", which="both", alpha=0.3)
    # error against time for the whole tolerance sweep
    ax = axes[2]
    markers = {10: "o", 2: "s"}
    for sname, colour in (("Anderson", "tab:blue"), ("FixedPoint", "tab:green")):
        for n in (10, 2):
            pts = [
                r
                for r in rows
                if r["method"] == "holomorphic EP"
                and r["N"] == n
                and r["solver"].startswith(
                    "AndersonAcceleration" if sname == "Anderson" else "FixedPoint"
                )
            ]
            pts.sort(key=lambda r: r["time_s"])
            ax.plot(
                [1e3 * r["time_s"] for r in pts],
                [r["rel_error"] for r in pts],
                marker=markers[n],
                color=colour,
                label=f"hEP N={n}, {sname} (tolerance sweep)",
            )
    for r in rows:
        if r["group"] == "paper":
            ax.plot(
                1e3 * r["time_s"],
                r["rel_error"],
                marker=markers[r["N"]],
                color="black",
                linestyle="none",
                markersize=9,
                label=f"paper schedule N={r['N']}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time per gradient call [ms]")
    ax.set_ylabel("relative L2 gradient error")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(
        f"holoode core speed: HopfieldMLP{tuple(settings['sizes'])}, batch "
        f"{settings['batch']}, float32, |β| = {settings['beta']}, CPU",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
