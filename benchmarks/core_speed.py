"""Core speed and exactness of holomorphic EP on the yardstick, against the paper.

On the yardstick (`benchmarks/_yardstick.py`: the paper's 784-256-256-10 network
on the first 20 real MNIST training images, float32, at initialisation and after
200 training steps) this script measures, side by side in one run:

- the paper's schedule (`_yardstick.paper_hep`, `paper_ep`: fixed synchronous
  steps, 200 free + 50 per point, the upper half circle from the free state);
- `holoode.gradient(holoode.HolomorphicEP(), ...)` with no other argument (the
  default a user gets), tuned hEP rows, and implicit differentiation;
- an exactness sweep (N = 4, 10, 16 × |β| = 0.1, 0.4, 1.0): the true relative
  error of each gradient next to `info.error_estimate`, `info.radius_ratio` and
  `info.result`, to check that the diagnostics never hide a wrong gradient.

Time per call is the median of calls interleaved round-robin across rows (so
background load hits every row alike); compile time is the first call minus the
median. Samples/s = batch / time per call. Errors are relative L2 against the
float64 reference of `_yardstick.exact_gradient`. At the end the targets are
printed with met / not met.

Usage:

    python benchmarks/core_speed.py            # both states (about 15 min on 2 cores)
    python benchmarks/core_speed.py --quick    # initial state, fewer rows
    python benchmarks/core_speed.py --out DIR  # where core_speed.json/.png/.md go
    python benchmarks/core_speed.py --replot   # table and plot again from the JSON
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import holoode
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent))
    import holoode

import _yardstick as ys
import jax.numpy as jnp
import numpy as np
from _common import machine, result_name, timed, versions


def _hep_rows(quick: bool):
    """`(label, rule, solver)` for the holoode rows; `None` solver = the default."""
    anderson = lambda tol: holoode.AndersonAcceleration(  # noqa: E731
        rtol=tol, atol=tol, memory=10, max_steps=3000
    )
    rows = [
        ("hEP default (no arguments)", holoode.HolomorphicEP(), None),
        (
            "hEP default rule, SteadyStateODE",
            holoode.HolomorphicEP(),
            holoode.SteadyStateODE(),
        ),
        (
            "hEP |β|=0.4 N=10, Anderson tol 1e-4",
            holoode.HolomorphicEP(0.4, 10),
            anderson(1e-4),
        ),
        (
            "hEP |β|=0.1 N=2, Anderson tol 1e-4",
            holoode.HolomorphicEP(0.1, 2),
            anderson(1e-4),
        ),
        (
            "hEP |β|=0.1 N=6, Anderson tol 1e-5",
            holoode.HolomorphicEP(0.1, 6),
            anderson(1e-5),
        ),
    ]
    if not quick:
        rows.append(
            (
                "implicit differentiation, Anderson tol 1e-5",
                holoode.ImplicitDifferentiation(),
                anderson(1e-5),
            )
        )
    return rows


def _paper_rows(quick: bool):
    rows = [("paper hEP |β|=0.4 N=10", ys.paper_hep(0.4, 10))]
    if not quick:
        rows += [
            ("paper hEP |β|=0.4 N=2", ys.paper_hep(0.4, 2)),
            ("paper EP β=0.1", ys.paper_ep(0.1)),
            ("paper EP β=0.4", ys.paper_ep(0.4)),
        ]
    return rows


def measure_speed(model, x, y, reference, quick: bool, calls: int):
    """Rows with compile time, time per call, error and diagnostics."""
    calls_fns = []
    for label, fn in _paper_rows(quick):
        calls_fns.append((label, lambda fn=fn: (fn(model, x, y), None)))
    for label, rule, solver in _hep_rows(quick):
        calls_fns.append(
            (
                label,
                lambda rule=rule, solver=solver: holoode.gradient(
                    rule, model, x, y, cost=ys.COST, solver=solver, throw=False
                ),
            )
        )
    first, outputs = {}, {}
    for label, fn in calls_fns:
        outputs[label], first[label] = timed(fn)
    times = {label: [] for label, _ in calls_fns}
    for _ in range(calls):
        for label, fn in calls_fns:
            times[label].append(timed(fn)[1])
    rows = []
    for label, _ in calls_fns:
        grads, info = outputs[label]
        median = statistics.median(times[label])
        row = {
            "method": label,
            "compile_s": max(first[label] - median, 0.0),
            "time_s": median,
            "samples_per_s": len(x) / median,
            "rel_error": ys.relative_error(grads, reference),
        }
        if info is not None:
            steps = np.asarray(info.num_steps)
            row.update(
                error_estimate=float(info.error_estimate),
                max_radius_ratio=float(jnp.max(info.radius_ratio)),
                result=result_name(info.result),
                free_steps_max=int(steps[:, 0].max()),
                free_steps_median=float(np.median(steps[:, 0])),
                nudged_steps_max=int(steps[:, 1:].max()) if steps.shape[1] > 1 else 0,
            )
        rows.append(row)
    return rows


def measure_exactness(model, x, y, reference, quick: bool):
    """True error against the diagnostics over a grid of N and |β|."""
    solver = holoode.AndersonAcceleration(
        rtol=1e-5, atol=1e-5, memory=10, max_steps=3000
    )
    rows = []
    for n in (4, 10) if quick else (4, 10, 16):
        for beta in (0.1, 0.4) if quick else (0.1, 0.4, 1.0):
            rule = holoode.HolomorphicEP(jnp.asarray(beta, jnp.float32), n)
            grads, info = holoode.gradient(
                rule, model, x, y, cost=ys.COST, solver=solver, throw=False
            )
            error = ys.relative_error(grads, reference)
            estimate = float(info.error_estimate)
            result = result_name(info.result)
            rows.append(
                {
                    "num_points": n,
                    "beta": beta,
                    "rel_error": error,
                    "error_estimate": estimate,
                    "max_radius_ratio": float(jnp.max(info.radius_ratio)),
                    "result": result,
                    # Honest: the estimate is at least a third of the truth, or
                    # the gradient is refused.
                    "honest": bool(estimate >= error / 3 or result != "successful"),
                }
            )
    return rows


def targets(record) -> list[tuple[str, bool, str]]:
    """The targets of this benchmark, each with met / not met and the evidence."""
    out = []
    first = next(iter(record["states"]))
    for state, data in record["states"].items():
        rows = {r["method"]: r for r in data["speed"]}
        paper = rows["paper hEP |β|=0.4 N=10"]
        default = rows["hEP default (no arguments)"]
        out.append(
            (
                f"[{state}] default hEP within 1e-2 of the exact gradient",
                default["rel_error"] <= 1e-2 and default["result"] == "successful",
                f"error {default['rel_error']:.2e}, result {default['result']}",
            )
        )
        out.append(
            (
                f"[{state}] default hEP ≥ 3× the paper's samples/s",
                default["samples_per_s"] >= 3 * paper["samples_per_s"],
                f"{default['samples_per_s'] / paper['samples_per_s']:.2f}×",
            )
        )
        matched = [
            r
            for r in data["speed"]
            if r["method"].startswith("hEP")
            and r["rel_error"] <= paper["rel_error"]
            and r.get("result") == "successful"
        ]
        best = max(matched, key=lambda r: r["samples_per_s"], default=None)
        out.append(
            (
                f"[{state}] hEP at the paper's error ≥ 10× the paper's samples/s",
                best is not None
                and best["samples_per_s"] >= 10 * paper["samples_per_s"],
                "no row at the paper's error"
                if best is None
                else f"{best['method']}: "
                f"{best['samples_per_s'] / paper['samples_per_s']:.2f}× at error "
                f"{best['rel_error']:.2e} (paper {paper['rel_error']:.2e})",
            )
        )
        if state == first:
            # Later states reuse the programs compiled for the first one (same
            # shapes, same model structure): their "compile" is a cache hit.
            out.append(
                (
                    f"[{state}] compile of the default gradient ≤ 10 s",
                    default["compile_s"] <= 10,
                    f"{default['compile_s']:.1f} s",
                )
            )
        dishonest = [r for r in data["exactness"] if not r["honest"]]
        out.append(
            (
                f"[{state}] error_estimate ≥ true error / 3 or refused (sweep)",
                not dishonest,
                "all honest"
                if not dishonest
                else "; ".join(
                    f"N={r['num_points']} |β|={r['beta']}: "
                    f"est {r['error_estimate']:.1e} vs {r['rel_error']:.1e}"
                    for r in dishonest
                ),
            )
        )
    return out


def table(record) -> str:
    lines = []
    first = next(iter(record["states"]))
    for state, data in record["states"].items():
        lines += [
            f"### {state}",
            "",
            "| method | samples/s | vs paper N=10 | compile [s] | rel. error |"
            " error estimate | result | free steps max (median) | nudged max |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        paper = next(
            r for r in data["speed"] if r["method"] == "paper hEP |β|=0.4 N=10"
        )
        for r in data["speed"]:
            est = r.get("error_estimate")
            compile_text = f"{r['compile_s']:.1f}" if state == first else "(reused)"
            fixed = "350" if r["method"].startswith("paper EP") else "200"
            steps = (
                f"{r['free_steps_max']} ({r['free_steps_median']:.0f}) | "
                f"{r['nudged_steps_max']} |"
                if "free_steps_max" in r
                else f"{fixed} (fixed) | fixed |"
            )
            lines.append(
                f"| {r['method']} | {r['samples_per_s']:.1f} | "
                f"{r['samples_per_s'] / paper['samples_per_s']:.2f}× | "
                f"{compile_text} | {r['rel_error']:.2e} | "
                f"{'-' if est is None else f'{est:.2e}'} | {r.get('result', '-')} | "
                + steps
            )
        lines += [
            "",
            "| N | \\|β\\| | rel. error | error estimate | max radius ratio | result |"
            " honest |",
            "|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in data["exactness"]:
            lines.append(
                f"| {r['num_points']} | {r['beta']} | {r['rel_error']:.2e} | "
                f"{r['error_estimate']:.2e} | {r['max_radius_ratio']:.2f} | "
                f"{r['result']} | {'yes' if r['honest'] else '**no**'} |"
            )
        lines.append("")
    lines += ["| target | met | evidence |", "|---|---|---|"]
    for name, met, evidence in record["targets"]:
        lines.append(f"| {name} | {'met' if met else '**not met**'} | {evidence} |")
    return "\n".join(lines)


def plot(record, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = list(record["states"])
    fig, axes = plt.subplots(
        1, len(states), figsize=(6 * len(states), 4.5), squeeze=False
    )
    for ax, state in zip(axes[0], states):
        for r in record["states"][state]["speed"]:
            paper = r["method"].startswith("paper")
            ax.scatter(
                r["samples_per_s"],
                r["rel_error"],
                marker="s" if paper else "o",
                color="grey" if paper else "C0",
            )
            ax.annotate(r["method"], (r["samples_per_s"], r["rel_error"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("samples/s (batch 20, float32, CPU)")
        ax.set_ylabel("relative gradient error")
        ax.set_title(f"yardstick, {state}")
        ax.axhline(1e-2, color="k", lw=0.5, ls="--")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="rewrite the table and plot from the JSON in --out, measuring nothing",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        record = json.loads((args.out / "core_speed.json").read_text())
        record["targets"] = targets(record)
        (args.out / "core_speed.json").write_text(json.dumps(record, indent=1))
        (args.out / "core_speed.md").write_text(table(record) + "\n")
        plot(record, args.out / "core_speed.png")
        print(table(record))
        return
    start = time.perf_counter()
    record = {
        "settings": {"quick": args.quick, "batch": ys.BATCH, "sizes": ys.SIZES},
        "machine": machine(),
        "versions": versions(),
        "states": {},
    }
    for state in ("init",) if args.quick else ys.STATES:
        model, x, y = ys.load(state)
        reference = ys.exact_gradient(model, x, y)
        print(f"[{state}] speed rows", flush=True)
        speed = measure_speed(model, x, y, reference, args.quick, calls=3)
        print(f"[{state}] exactness sweep", flush=True)
        exact = measure_exactness(model, x, y, reference, args.quick)
        record["states"][state] = {"speed": speed, "exactness": exact}
    record["targets"] = targets(record)
    record["wall_time_s"] = time.perf_counter() - start
    (args.out / "core_speed.json").write_text(json.dumps(record, indent=1))
    text = table(record)
    (args.out / "core_speed.md").write_text(text + "\n")
    plot(record, args.out / "core_speed.png")
    print(text)
    print(f"wall time {record['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
