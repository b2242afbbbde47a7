"""Stability map of the nudged equilibrium in the complex β-plane (the analogue of
Laborieux & Zenke 2022, Fig. 2b), and a check of the estimated safe |β| against
the actual accuracy of holomorphic EP.

Model: `holoode.nn.HopfieldMLP((64, h, 10))` (shifted sigmoid, PyTorch-default
initialisation scaled by `--gain`), float64, on scikit-learn's 8×8 digits
(scaled to [0, 1]; shipped inside scikit-learn, no download), cross-entropy.

1. `holoode.stability_map` for one example on a square grid of complex β, with
   the dynamics run to steady state (`holoode.SteadyStateODE`, what a physical
   network would do; at most 1024 steps, so slowly converging points count as
   not reached): where the equilibrium is reached, and where it is the analytic
   continuation of the free one. Saved as stability.png.
2. `holoode.safe_beta` for a batch, then holomorphic EP (N = 16) at fractions of
   that radius against the exact gradient (implicit differentiation): inside, the
   error falls like (|β|/R)^N; beyond, the continuation is lost.

Usage:

    python benchmarks/stability.py           # small size (~1 minute on 2 cores)
    python benchmarks/stability.py --full    # finer grid, bigger batch
    python benchmarks/stability.py --out DIR # where stability.json/.png go
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
    from ._common import digits, flat
except ImportError:  # run as a script
    from _common import digits, flat

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np

from holoode._stability import beta_grid, plot_stability_map, safe_beta, stability_map


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="bigger sizes")
    parser.add_argument("--gain", type=float, default=2.0, help="weight scale")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="output folder (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, batch, num, num_radii = (64, 64, 101, 32) if args.full else (32, 16, 41, 16)
    model = holoode.nn.HopfieldMLP(
        (64, width, 10), key=jr.key(0), gain=args.gain, dtype=jnp.float64
    )
    x, y = digits(batch)
    cost = holoode.CrossEntropy()
    newton = holoode.RootFind(rtol=1e-12, atol=1e-12)
    start = time.time()

    # 1. The map for one example.
    one = float(safe_beta(model, x[:1], y[:1], cost=cost, solver=newton))
    extent = 2.5 * one
    t0 = time.time()
    result = stability_map(
        model,
        x[0],
        y[0],
        cost=cost,
        betas=beta_grid(extent, num),
        solver=holoode.SteadyStateODE(max_steps=1024),
        num_radii=num_radii,
    )
    map_seconds = time.time() - t0
    plot_stability_map(
        result,
        out / "stability.png",
        title=(
            f"HopfieldMLP (64, {width}, 10), one digit; SteadyStateODE; "
            f"R ≈ {float(result.radius):.3g} (safe_beta, Newton: {one:.3g})"
        ),
    )
    modulus = np.abs(np.asarray(result.betas))
    summary = dict(
        radius_map=float(result.radius),
        safe_beta_one_example=one,
        extent=extent,
        grid=f"{num}x{num}",
        fraction_reached=float(np.mean(result.reached)),
        fraction_continued=float(np.mean(result.continued)),
        fraction_reached_inside_radius=float(
            np.mean(np.asarray(result.reached)[modulus < float(result.radius)])
        ),
        fraction_judged=float(np.mean(np.isfinite(result.mismatch))),
        max_mismatch_judged=float(np.nanmax(np.asarray(result.mismatch))),
        circles=dict(
            radii=np.asarray(result.radii).tolist(),
            radius_ratio=np.asarray(result.radius_ratio).tolist(),
            ok=np.asarray(result.circle_ok).tolist(),
        ),
        seconds=map_seconds,
    )
    print(
        f"map: R ≈ {summary['radius_map']:.4g} (safe_beta on the same example with "
        f"Newton: {one:.4g}); reached {summary['fraction_reached']:.1%} of the grid, "
        f"continued {summary['fraction_continued']:.1%}; {map_seconds:.0f} s"
    )

    # 2. The safe |β| of a batch against the accuracy of holomorphic EP.
    t0 = time.time()
    radius = float(safe_beta(model, x, y, cost=cost, solver=newton))
    safe_seconds = time.time() - t0
    exact_rule = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    exact = flat(holoode.gradient(exact_rule, model, x, y, cost=cost, solver=newton)[0])
    checks = []
    print(f"safe_beta (batch of {batch}): R ≈ {radius:.4g} ({safe_seconds:.1f} s)")
    for fraction in [0.25, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0]:
        grads, info = holoode.gradient(
            holoode.HolomorphicEP(fraction * radius, 16),
            model,
            x,
            y,
            cost=cost,
            solver=newton,
            throw=False,
        )
        rel = float(np.linalg.norm(flat(grads) - exact) / np.linalg.norm(exact))
        lost = bool(info.result == holoode.RESULTS.continuation_lost)
        ratio = float(jnp.max(info.radius_ratio))
        checks.append(
            dict(
                fraction=fraction,
                beta=fraction * radius,
                rel_error=rel,
                continuation_lost=lost,
                max_radius_ratio=ratio,
            )
        )
        print(
            f"  hEP N=16 at {fraction:4.2f} R (|β| = {fraction * radius:.3g}): "
            f"rel. error {rel:.2e}, HolomorphicEP radius_ratio {ratio:.2f}"
            f"{', continuation_lost' if lost else ''}"
        )
    elapsed = time.time() - start
    record = dict(
        config=dict(
            sizes=(64, width, 10),
            gain=args.gain,
            batch=batch,
            dtype="float64",
            map_solver="SteadyStateODE(max_steps=1024)",
            safe_beta_solver="RootFind(rtol=1e-12, atol=1e-12)",
            num_points=16,
            num_radii=num_radii,
            full=args.full,
        ),
        map=summary,
        safe_beta=dict(batch=radius, seconds=safe_seconds, hep_checks=checks),
        seconds=elapsed,
        machine=dict(
            platform=platform.platform(),
            cpu_count=os.cpu_count(),
            jax=jax.__version__,
            backend=jax.default_backend(),
        ),
    )
    (out / "stability.json").write_text(json.dumps(record, indent=2))
    print(
        f"wrote {out / 'stability.json'} and {out / 'stability.png'} ({elapsed:.0f} s)"
    )


if __name__ == "__main__":
    main()
