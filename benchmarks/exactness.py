"""Exactness: gradient error of holomorphic and classic EP against the exact
gradient, versus the number of points N and the radius |β| (the analogue of
Laborieux & Zenke 2022, Fig. 2d), and the a-posteriori error estimate of
`holoode.HolomorphicEP` against the true error.

Model: `holoode.nn.HopfieldMLP((64, 32, 32, 10))` (shifted sigmoid, PyTorch-default
initialisation), float64, on a batch of 16 of scikit-learn's 8×8 digits (scaled to
[0, 1]; shipped with scikit-learn, no download), cross-entropy. Every equilibrium
is solved by Newton (`holoode.RootFind`, tolerance 1e-12), so the numbers measure
the estimators, not the solver; the reference is implicit differentiation with a
dense LU adjoint at the same equilibrium.

- hEP, `HolomorphicEP(|β|, N)` for every N and |β| of the grid: relative L2 error
  `‖g − g*‖/‖g*‖`, `info.error_estimate` (N ≥ 3), the largest
  `info.radius_ratio` and the result code (`continuation_lost` when the rule's
  own diagnostic refuses the circle). Theory: error ∝ (|β|/R)^N inside the disc
  of analyticity (radius R), N = 2 being the symmetric EP estimate (∝ |β|²).
- Classic EP, `ClassicEP(β)` one-sided (error ∝ β) and symmetric (∝ β²), for
  the β of a wider grid.
- `holoode.safe_beta` for the batch (the estimated R), marked on the plots.

β is an array field of the rules, so each N (and each classic variant) compiles
once and the |β| sweep reuses the compiled program.

Usage:

    python -m benchmarks.exactness          # small size (~1-2 minutes on 2 cores)
    python -m benchmarks.exactness --full   # wider network, bigger batch, finer grids
    python -m benchmarks.exactness --out DIR
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


try:
    import holoode
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import holoode


try:
    from ._common import digits, flat, result_name
except ImportError:  # run as a script
    from _common import digits, flat, result_name

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="bigger sizes")
    parser.add_argument("--sizes", default=None, help="e.g. 64,32,32,10")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--num-points", default=None, help="e.g. 2,4,8")
    parser.add_argument("--betas", default=None, help="hEP radii, e.g. 0.1,0.5")
    parser.add_argument("--ep-betas", default=None, help="classic EP β values")
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
        record = json.loads((out / "exactness.json").read_text())
        (out / "exactness.md").write_text(markdown(record))
        plot(record, out / "exactness.png")
        return record
    start = time.perf_counter()
    if args.full:
        sizes, batch = (64, 128, 128, 10), 128
        num_points = [2, 3, 4, 5, 6, 8, 10, 12, 16, 20]
        betas = [0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0]
        ep_betas = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0]
    else:
        sizes, batch = (64, 32, 32, 10), 16
        num_points = [2, 3, 4, 8, 16]
        betas = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0]
        ep_betas = [1e-4, 1e-3, 0.01, 0.1, 1.0]
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    batch = args.batch or batch
    if args.num_points:
        num_points = [int(n) for n in args.num_points.split(",")]
    if args.betas:
        betas = [float(b) for b in args.betas.split(",")]
    if args.ep_betas is not None:  # "" skips classic EP
        ep_betas = [float(b) for b in args.ep_betas.split(",") if b]

    model = holoode.nn.HopfieldMLP(sizes, key=jr.key(0), dtype=jnp.float64)
    x, y = digits(batch)
    # Smoke tests use a smaller network: the first pixels, labels modulo classes.
    x, y = x[:, : sizes[0]], y % sizes[-1]
    cost = holoode.CrossEntropy()
    solver = holoode.RootFind(rtol=1e-12, atol=1e-12)
    exact_rule = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    exact = flat(holoode.gradient(exact_rule, model, x, y, cost=cost, solver=solver)[0])
    radius = float(holoode.safe_beta(model, x, y, cost=cost, solver=solver))
    print(
        f"exactness: HopfieldMLP{sizes}, batch {batch}, float64; "
        f"estimated safe |β| (holoode.safe_beta) = {radius:.3g}",
        flush=True,
    )

    def run(rule):
        grads, info = holoode.gradient(
            rule, model, x, y, cost=cost, solver=solver, throw=False
        )
        g = flat(grads)
        return dict(
            rel_error=float(np.linalg.norm(g - exact) / np.linalg.norm(exact)),
            error_estimate=float(info.error_estimate),
            max_radius_ratio=float(jnp.max(info.radius_ratio)),
            result=result_name(info.result),
        )

    hep = []
    for n in num_points:
        for beta in betas:
            row = dict(num_points=n, beta=beta, **run(holoode.HolomorphicEP(beta, n)))
            hep.append(row)
            print(
                f"  hEP N={n:<2d} |β|={beta:<5g} rel. error {row['rel_error']:.2e}  "
                f"estimate {row['error_estimate']:.2e}  {row['result']}",
                flush=True,
            )
    classic = []
    for symmetric in (False, True):
        for beta in ep_betas:
            row = dict(
                symmetric=symmetric,
                beta=beta,
                **run(holoode.ClassicEP(beta, symmetric=symmetric)),
            )
            classic.append(row)
            print(
                f"  EP {'symmetric' if symmetric else 'one-sided'} β={beta:<6g} "
                f"rel. error {row['rel_error']:.2e}",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    record = dict(
        benchmark="exactness",
        command="python -m benchmarks.exactness " + " ".join(argv or sys.argv[1:]),
        settings=dict(
            sizes=sizes,
            batch=batch,
            dtype="float64",
            num_points=num_points,
            betas=betas,
            ep_betas=ep_betas,
            solver="RootFind(rtol=1e-12, atol=1e-12) (Newton)",
            reference="ImplicitDifferentiation(lineax.LU())",
            data="sklearn digits, [0, 1]",
            full=args.full,
        ),
        safe_beta=radius,
        hep=hep,
        classic=classic,
        fits=fits(hep, classic, radius),
        wall_time_s=elapsed,
        machine=dict(
            platform=platform.platform(),
            cpu_count=os.cpu_count(),
            jax=jax.__version__,
            backend=jax.default_backend(),
            load_average=list(os.getloadavg()),
        ),
    )
    (out / "exactness.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "exactness.md").write_text(markdown(record))
    plot(record, out / "exactness.png")
    print(markdown(record))
    print(f"wrote {out}/exactness.json, .md, .png ({elapsed:.0f} s)")
    return record


def _slope(points):
    """Least-squares slope of log(error) against log(β) (None if < 2 points)."""
    if len(points) < 2:
        return None
    b, e = np.log(np.array(points)).T
    return float(np.polyfit(b, e, 1)[0])


def fits(hep, classic, radius):
    """Fitted convergence orders in β, from the points above the round-off floor
    (error > 1e-11) and, for hEP, well inside the estimated radius (|β| ≤ R/2)."""
    out = {}
    for n in sorted({r["num_points"] for r in hep}):
        pts = [
            (r["beta"], r["rel_error"])
            for r in hep
            if r["num_points"] == n
            and r["rel_error"] > 1e-11
            and r["beta"] <= radius / 2
        ]
        out[f"hEP N={n}"] = dict(order=_slope(pts), theory=n, points=len(pts))
    for symmetric, theory in ((False, 1), (True, 2)):
        pts = [
            (r["beta"], r["rel_error"])
            for r in classic
            if r["symmetric"] == symmetric and 1e-11 < r["rel_error"] < 0.1
        ]
        name = "EP symmetric" if symmetric else "EP one-sided"
        out[name] = dict(order=_slope(pts), theory=theory, points=len(pts))
    return out


def markdown(record) -> str:
    s = record["settings"]
    betas = s["betas"]
    lines = [
        f"HopfieldMLP{tuple(s['sizes'])}, batch {s['batch']}, float64, Newton to "
        f"1e-12; estimated safe |β| = {record['safe_beta']:.3g}. Relative error of "
        "holomorphic EP (rows: N; columns: |β|; † = result code not `successful`, "
        "see the JSON):",
        "",
        "| N | " + " | ".join(f"{b:g}" for b in betas) + " |",
        "|---|" + "---:|" * len(betas),
    ]
    for n in s["num_points"]:
        cells = []
        for b in betas:
            r = next(
                r for r in record["hep"] if r["num_points"] == n and r["beta"] == b
            )
            mark = "" if r["result"] == "successful" else " †"
            cells.append(f"{r['rel_error']:.1e}{mark}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Classic EP (columns: β):",
        "",
        "| variant | " + " | ".join(f"{b:g}" for b in s["ep_betas"]) + " |",
        "|---|" + "---:|" * len(s["ep_betas"]),
    ]
    for symmetric in (False, True):
        cells = [
            f"{r['rel_error']:.1e}"
            for r in record["classic"]
            if r["symmetric"] == symmetric
        ]
        name = "symmetric" if symmetric else "one-sided"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Fitted order of the error in β (theory: hEP N, EP one-sided 1, symmetric 2):",
        "",
        "| estimator | fitted order | theory | points |",
        "|---|---:|---:|---:|",
    ]
    for name, f in record["fits"].items():
        order = "" if f["order"] is None else f"{f['order']:.2f}"
        lines.append(f"| {name} | {order} | {f['theory']} | {f['points']} |")
    lines += [
        "",
        "`info.error_estimate` / true error, over the |β| of the grid where both are "
        "above 1e-13 (min – max):",
        "",
    ]
    for n in s["num_points"]:
        ratios = [
            r["error_estimate"] / r["rel_error"]
            for r in record["hep"]
            if r["num_points"] == n
            and np.isfinite(r["error_estimate"])
            and np.isfinite(r["rel_error"])
            and min(r["error_estimate"], r["rel_error"]) > 1e-13
        ]
        if ratios:
            lines.append(f"- N={n}: {min(ratios):.2g} – {max(ratios):.2g}")
    return "\n".join(lines) + "\n"


def plot(record, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s, hep, radius = record["settings"], record["hep"], record["safe_beta"]
    floor = 1e-16
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_n, ax_b, ax_e = fig.subplots(1, 3)

    for i, b in enumerate(s["betas"]):
        rows = [r for r in hep if r["beta"] == b]
        ax_n.semilogy(
            [r["num_points"] for r in rows],
            [max(r["rel_error"], floor) for r in rows],
            "o-",
            color=f"C{i}",
            label=f"|β| = {b:g}" + (" (> R)" if b > radius else ""),
            ms=4,
        )
    ax_n.set_xlabel("number of points N")
    ax_n.set_ylabel("relative error vs exact gradient")
    ax_n.set_title("holomorphic EP: error vs N")
    ax_n.legend(fontsize=7)

    for i, n in enumerate(s["num_points"]):
        rows = [r for r in hep if r["num_points"] == n]
        ax_b.loglog(
            [r["beta"] for r in rows],
            [max(r["rel_error"], floor) for r in rows],
            "o-",
            color=f"C{i}",
            label=f"hEP N={n}",
            ms=4,
        )
    for symmetric, style in ((False, "k--"), (True, "k:")):
        rows = [r for r in record["classic"] if r["symmetric"] == symmetric]
        ax_b.loglog(
            [r["beta"] for r in rows],
            [max(r["rel_error"], floor) for r in rows],
            style,
            marker="s",
            ms=4,
            label="EP " + ("symmetric" if symmetric else "one-sided"),
        )
    lost = [r for r in hep if r["result"] != "successful"]
    ax_b.loglog(
        [r["beta"] for r in lost],
        [
            max(r["rel_error"], floor) if np.isfinite(r["rel_error"]) else 1.0
            for r in lost
        ],
        "x",
        color="red",
        ms=9,
        label="result not successful (non-finite at 1)",
    )
    ax_b.axvline(radius, color="gray", lw=1, ls="--")
    ax_b.set_xlabel("|β| (classic EP: β)")
    ax_b.set_title("error vs |β| (dashed: estimated safe |β|)")
    ax_b.legend(fontsize=7, ncol=2)

    est = [r for r in hep if np.isfinite(r["error_estimate"])]
    for i, n in enumerate(s["num_points"]):
        rows = [r for r in est if r["num_points"] == n]
        if rows:
            ax_e.loglog(
                [max(r["rel_error"], floor) for r in rows],
                [max(r["error_estimate"], floor) for r in rows],
                "o",
                color=f"C{i}",
                label=f"N={n}",
                ms=5,
            )
    if est:
        lo = max(min(min(r["rel_error"], r["error_estimate"]) for r in est), floor)
        hi = max(max(r["rel_error"], r["error_estimate"]) for r in est)
        ax_e.loglog([lo, hi], [lo, hi], color="gray", lw=1, label="estimate = true")
    ax_e.set_xlabel("true relative error")
    ax_e.set_ylabel("info.error_estimate")
    ax_e.set_title("a-posteriori estimate vs true error (N ≥ 3)")
    ax_e.legend(fontsize=7)
    for ax in (ax_n, ax_b, ax_e):
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(
        f"Exactness: HopfieldMLP{tuple(s['sizes'])}, batch {s['batch']}, float64, "
        "equilibria by Newton to 1e-12"
    )
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
