"""Convnet training-step throughput: hEP N = 2 vs implicit differentiation vs the
paper's fixed-step schedule, side by side, on a CIFAR-shaped batch.

Each method is one jitted training step — the gradient of the batch-mean
cross-entropy plus an SGD-with-momentum update — of
`holoode.nn.HopfieldConvNet((3, 32, 32), channels, 10, padding=(1, 1, 1, 0))`
(softmax pooling after every layer, holomorphic hard-tanh) on random inputs of
CIFAR-10's shape and integer labels, in float32:

- **hEP N = 2** (`HolomorphicEP(|β|, 2)`, the paper's CIFAR setting, |β| = 1),
  equilibria found by `FixedPointIteration` (damped synchronous map) to the
  tolerances 1e-5 and 1e-6;
- **implicit differentiation** (the backprop reference at the free equilibrium,
  GMRES adjoint), same solver, tolerance 1e-6;
- **the paper's schedule** (Laborieux & Zenke, 2022, ImageNet 32×32 setting):
  the synchronous map iterated a fixed 250 free steps, then 60 steps at each of
  the N = 2 points, in complex arithmetic (re-implemented in
  `_yardstick.paper_hep`).

Reported per method: compile time (first call minus the steady-state median),
steady-state median seconds per step (calls interleaved across methods so that
background load hits each alike), images per second, and the relative L2 error of
the gradient against the exact one (implicit differentiation of the same network
cast to float64, equilibrium solved to 1e-10). At N = 2 and |β| = 1 the hEP and
paper rows share the same O(|β|²) bias: what separates them is the time to reach
it.

The default size uses a quarter of the paper's channel widths (16-32-64-64 ×
their 128-256-512-512 / 8) and batch 8 so that it runs in a couple of minutes on
2 CPU cores; `--full` uses the paper's widths and batch 32 (meant for a GPU).

Usage:

    python benchmarks/convnet_speed.py           # small, CPU
    python benchmarks/convnet_speed.py --full    # paper widths
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


try:
    import holoode
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import holoode

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax


try:
    from . import _yardstick
    from ._common import cast_model, machine, rel_error, timed, versions
except ImportError:  # run as a script
    import _yardstick
    from _common import cast_model, machine, rel_error, timed, versions


RESULTS = Path(__file__).resolve().parent / "results"


def make_step(gradient_fn, optim):
    """A jitted training step `(model, opt_state, x, y) -> (model, state, grads)`."""

    @eqx.filter_jit
    def step(model, opt_state, x, y):
        grads = gradient_fn(model, x, y)
        updates, opt_state = optim.update(grads, opt_state)
        return eqx.apply_updates(model, updates), opt_state, grads

    return step


def markdown(result) -> str:
    lines = [
        "| method | compile (s) | step (s) | images/s | speed-up vs paper | "
        "gradient rel. error |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['method']} | {row['compile_s']:.1f} | {row['step_s']:.3f} | "
            f"{row['images_per_s']:.1f} | {row['speedup_vs_paper']:.2f}× | "
            f"{row['rel_error']:.1e} |"
        )
    s = result["settings"]
    lines.append("")
    lines.append(
        f"Channels {s['channels']}, batch {s['batch']}, float32, |β| = {s['beta']}; "
        f"paper schedule {s['free_steps']} free + {s['nudged_steps']} nudged steps "
        f"per point; gradient error against {s['reference']}."
    )
    return "\n".join(lines) + "\n"


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    names = [r["method"] for r in rows]
    axes[0].barh(names, [r["images_per_s"] for r in rows], color="C0")
    axes[0].set_xlabel("images / s (training step)")
    axes[1].barh(names, [r["rel_error"] for r in rows], color="C1")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("gradient rel. error vs exact (float64)")
    axes[1].set_yticks([])
    s = result["settings"]
    fig.suptitle(f"HopfieldConvNet {s['channels']}, batch {s['batch']}, CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="paper widths, batch 32")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    channels = (128, 256, 512, 512) if args.full else (16, 32, 64, 64)
    batch = 32 if args.full else 8
    repeats = args.repeats or (5 if args.full else 3)
    beta, free_steps, nudged_steps = 1.0, 250, 60

    key_model, key_x, key_y = jr.split(jr.key(0), 3)
    model = holoode.nn.HopfieldConvNet(
        (3, 32, 32), channels, 10, padding=(1, 1, 1, 0), key=key_model
    )
    x = jr.normal(key_x, (batch, 3, 32, 32), jnp.float32)
    y = jr.randint(key_y, (batch,), 0, 10)
    cost = holoode.CrossEntropy()
    optim = optax.sgd(0.01, momentum=0.9)
    opt_state = optim.init(eqx.filter(model, eqx.is_inexact_array))

    def library(rule, solver):
        def gradient_fn(m, x, y):
            grads, _ = holoode.gradient(
                rule, m, x, y, cost=cost, solver=solver, throw=False
            )
            return grads

        return gradient_fn

    def fixed_point(tol):
        return holoode.FixedPointIteration(
            step_size=0.5, rtol=tol, atol=tol, max_steps=20000
        )

    paper = _yardstick.paper_hep(beta, 2, free_steps, nudged_steps)
    hep = holoode.HolomorphicEP(beta, 2)
    methods = {
        "hEP N=2, tol 1e-5": library(hep, fixed_point(1e-5)),
        "hEP N=2, tol 1e-6": library(hep, fixed_point(1e-6)),
        "implicit diff., tol 1e-6": library(
            holoode.ImplicitDifferentiation(), fixed_point(1e-6)
        ),
        "paper schedule N=2": paper,
    }
    with jax.enable_x64(True):
        exact = library(holoode.ImplicitDifferentiation(), fixed_point(1e-10))(
            cast_model(model, jnp.float64), x.astype(jnp.float64), y
        )
        reference = np.concatenate(
            [np.asarray(a).ravel() for a in jax.tree_util.tree_leaves(exact)]
        )

    steps = {name: make_step(fn, optim) for name, fn in methods.items()}
    first, grads = {}, {}
    for name, step in steps.items():
        out, first[name] = timed(lambda: step(model, opt_state, x, y))
        grads[name] = out[2]
    times = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved: background load hits every method alike
        for name, step in steps.items():
            times[name].append(timed(lambda: step(model, opt_state, x, y))[1])

    rows = []
    for name in steps:
        median = statistics.median(times[name])
        rows.append(
            {
                "method": name,
                "compile_s": max(first[name] - median, 0.0),
                "step_s": median,
                "step_s_all": times[name],
                "images_per_s": batch / median,
                "rel_error": rel_error(grads[name], reference),
            }
        )
    paper_time = rows[-1]["step_s"]
    for row in rows:
        row["speedup_vs_paper"] = paper_time / row["step_s"]
    result = {
        "benchmark": "convnet_speed",
        "settings": {
            "channels": list(channels),
            "batch": batch,
            "beta": beta,
            "reference": "implicit differentiation, float64, tol 1e-10",
            "free_steps": free_steps,
            "nudged_steps": nudged_steps,
            "repeats": repeats,
            "full": args.full,
        },
        "rows": rows,
        "machine": machine(),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "convnet_speed.json").write_text(json.dumps(result, indent=2))
    (args.out / "convnet_speed.md").write_text(markdown(result))
    plot(result, args.out / "convnet_speed.png")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
