"""Gradient accuracy against depth and |β| (the analogue of Laborieux & Zenke 2022,
Fig. 4): classic EP (one-sided and symmetric) and holomorphic EP against the exact
gradient.

Model: `holoode.nn.HopfieldMLP((64, h, ..., h, 10))` with 1 to 4 hidden layers of
width `h` (shifted sigmoid, PyTorch-default initialisation), float64, on a batch of
scikit-learn's 8×8 digits (scaled to [0, 1], shipped inside scikit-learn: no
download), cross-entropy. Every equilibrium is solved by Newton
(`holoode.RootFind`, tolerance 1e-12), so the numbers measure the estimators, not
the solver. The reference is implicit differentiation with a dense LU adjoint.

For each depth and |β|: the relative L2 error `‖g − g*‖/‖g*‖` and the cosine
similarity of each rule's gradient `g` with the exact one `g*`, the holomorphic EP
result code (`continuation_lost` when its own diagnostic refuses the circle), and
per depth the largest safe |β| estimated by `holoode.safe_beta` (marked on the
plot).

Usage:

    python benchmarks/depth.py           # small size (~1-3 minutes on 2 cores)
    python benchmarks/depth.py --full    # wider layers, a bigger batch, more β
    python benchmarks/depth.py --out DIR # where depth.json/.png go
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

from holoode._stability import safe_beta


def compare(grads, exact: np.ndarray) -> tuple[float, float]:
    g = flat(grads)
    rel = float(np.linalg.norm(g - exact) / np.linalg.norm(exact))
    cos = float(g @ exact / (np.linalg.norm(g) * np.linalg.norm(exact)))
    return rel, cos


def rules(num_points: list[int]):
    out = {
        "EP one-sided": lambda b: holoode.ClassicEP(b),
        "EP symmetric": lambda b: holoode.ClassicEP(b, symmetric=True),
    }
    for n in num_points:
        out[f"hEP N={n}"] = lambda b, n=n: holoode.HolomorphicEP(b, n)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="bigger sizes")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="output folder (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.full:
        width, batch, num_points = 128, 128, [4, 8]
        betas = [0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0]
    else:
        width, batch, num_points = 32, 16, [4]
        betas = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    depths = [1, 2, 3, 4]
    x, y = digits(batch)
    cost = holoode.CrossEntropy()
    solver = holoode.RootFind(rtol=1e-12, atol=1e-12)
    exact_rule = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    start = time.time()
    results, radii = [], {}
    for depth in depths:
        sizes = (64,) + (width,) * depth + (10,)
        model = holoode.nn.HopfieldMLP(sizes, key=jr.key(depth), dtype=jnp.float64)
        exact, _ = holoode.gradient(exact_rule, model, x, y, cost=cost, solver=solver)
        exact = flat(exact)
        radius = float(safe_beta(model, x, y, cost=cost, solver=solver))
        radii[depth] = radius
        print(f"depth {depth} {sizes}: estimated safe |β| = {radius:.3g}")
        for name, make in rules(num_points).items():
            for beta in betas:
                grads, info = holoode.gradient(
                    make(beta), model, x, y, cost=cost, solver=solver, throw=False
                )
                rel, cos = compare(grads, exact)
                result = result_name(info.result)
                results.append(
                    dict(
                        depth=depth,
                        rule=name,
                        beta=beta,
                        rel_error=rel,
                        cosine=cos,
                        result=result,
                    )
                )
                print(
                    f"  {name:13s} |β|={beta:<6g} rel.err {rel:9.2e}  "
                    f"cos {cos:.8f}  {result}"
                )
    elapsed = time.time() - start
    record = dict(
        config=dict(
            sizes=f"(64, {width} × depth, 10)",
            depths=depths,
            batch=batch,
            betas=betas,
            num_points=num_points,
            dtype="float64",
            solver="RootFind(rtol=1e-12, atol=1e-12)",
            reference="ImplicitDifferentiation(LU)",
            data="sklearn digits, [0, 1]",
            full=args.full,
        ),
        safe_beta=radii,
        results=results,
        seconds=elapsed,
        machine=dict(
            platform=platform.platform(),
            cpu_count=os.cpu_count(),
            jax=jax.__version__,
            backend=jax.default_backend(),
        ),
    )
    (out / "depth.json").write_text(json.dumps(record, indent=2))
    plot(record, out / "depth.png")
    print(f"wrote {out / 'depth.json'} and {out / 'depth.png'} ({elapsed:.0f} s)")


def plot(record, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    depths = record["config"]["depths"]
    names = list(dict.fromkeys(r["rule"] for r in record["results"]))
    fig = Figure(figsize=(3.2 * len(depths), 6.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(depths), sharex=True, sharey="row", squeeze=False)
    for col, depth in enumerate(depths):
        for name in names:
            rows = [
                r
                for r in record["results"]
                if r["depth"] == depth and r["rule"] == name
            ]
            b = [r["beta"] for r in rows]
            rel = [max(r["rel_error"], 1e-16) for r in rows]
            cos = [max(1 - r["cosine"], 1e-16) for r in rows]
            (line,) = axes[0, col].loglog(b, rel, "o-", label=name, ms=4)
            axes[1, col].loglog(b, cos, "o-", color=line.get_color(), ms=4)
            lost = [r for r in rows if r["result"] != "successful"]
            axes[0, col].loglog(
                [r["beta"] for r in lost],
                [max(r["rel_error"], 1e-16) for r in lost],
                "x",
                color="k",
                ms=8,
            )
        radius = record["safe_beta"].get(depth, record["safe_beta"].get(str(depth)))
        for ax in axes[:, col]:
            if radius is not None and np.isfinite(radius):
                ax.axvline(radius, color="gray", ls="--", lw=1)
            ax.grid(True, which="major", alpha=0.3)
        axes[0, col].set_title(f"{depth} hidden layer{'s' if depth > 1 else ''}")
        axes[1, col].set_xlabel("|β|")
    axes[0, 0].set_ylabel("relative error vs exact")
    axes[1, 0].set_ylabel("1 − cosine similarity")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        "Gradient vs exact (implicit differentiation); dashed: estimated safe |β|; "
        "×: result not successful"
    )
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
