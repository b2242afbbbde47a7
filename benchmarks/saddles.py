"""How often does an equilibrium solver land on a saddle of the paper's network,
and does the free phase leave it?

On the paper's MNIST network (`benchmarks/_yardstick.py`) at both states, for
the first `--images` MNIST training images (batches of 50):

- `AndersonAcceleration(memory=10)` (the default solver of `HolomorphicEP`)
  alone, as a bare solve: how many of its free equilibria converged, and how
  many of those are unstable according to the dense spectrum of the Jacobian of
  the dynamics (`max Re λ > 0`, computed in float64 from the float32 state);
- how many of those the library's Lanczos check (`unstable_direction`) flags, and
  whether it flags any stable one (a false alarm);
- after the library's free phase (`solve_free`: the check, and the dynamics from
  a flagged saddle or a stalled solve, refined by Anderson), how many
  equilibria are unstable by the dense spectrum or not converged;
- how many of those differ (by more than 0.1 in Euclidean norm) from the
  equilibrium the dynamics reach from the initial state (`SteadyStateODE`): an
  image with several stable equilibria, where the solver found another one.

Run: `python benchmarks/saddles.py [--images 200] [--out DIR]`. Writes
`saddles.json`, `saddles.md` and `saddles.png` to `benchmarks/results/` (or `DIR`).
"""

import argparse
import json
import pathlib
import sys
import time


HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import holoode
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent))
    import holoode

import _yardstick as ys
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from _common import machine, versions
from jax.flatten_util import ravel_pytree

from holoode._equilibrium.batched import initial_states, solve_batch, solve_free
from holoode._equilibrium.stable import unstable_direction


RESULTS_DIR = HERE / "results"
BATCH = 50


def _largest_real_eigenvalue(model, u, x, y) -> float:
    flat, unravel = ravel_pytree(u)

    def field(v):
        return ravel_pytree(model.vector_field(unravel(v), x, y, 0.0, ys.COST))[0]

    jacobian = np.asarray(jax.jacfwd(field)(flat), np.float64)
    return float(np.max(np.linalg.eigvals(jacobian).real))


def measure(state: str, images: int) -> dict:
    model = ys.network(state)
    solver = holoode.AndersonAcceleration(memory=10)
    bare = jax.jit(
        lambda x, y: solve_batch(
            solver, model, x, y, ys.COST, 0.0, initial_states(model, x, jnp.float32)
        )
    )
    free = jax.jit(
        lambda x, y: solve_free(
            solver, model, x, y, ys.COST, initial_states(model, x, jnp.float32)
        )
    )
    dynamics = jax.jit(
        lambda x, y: solve_batch(
            holoode.SteadyStateODE(),
            model,
            x,
            y,
            ys.COST,
            0.0,
            initial_states(model, x, jnp.float32),
        )
    )
    check = jax.jit(jax.vmap(lambda u, x: unstable_direction(model, u, x)[0]))
    rows = []
    for start in range(0, images, BATCH):
        x, y = ys.mnist(start, start + BATCH)
        sol = bare(x, y)
        flagged = np.asarray(check(sol.value, x))
        after = free(x, y)
        physical = dynamics(x, y)
        for b in range(BATCH):
            u = jtu.tree_map(lambda a: a[b], sol.value)
            v = jtu.tree_map(lambda a: a[b], after.value)
            w = jtu.tree_map(lambda a: a[b], physical.value)
            gap = float(np.linalg.norm(ravel_pytree(v)[0] - ravel_pytree(w)[0]))
            rows.append(
                {
                    "image": start + b,
                    "converged": bool(sol.result._value[b] == 0),
                    "steps": int(sol.num_steps[b]),
                    "max_re_eigenvalue": _largest_real_eigenvalue(model, u, x[b], y[b]),
                    "flagged": bool(flagged[b]),
                    "after_converged": bool(after.result._value[b] == 0),
                    "after_steps": int(after.num_steps[b]),
                    "after_max_re_eigenvalue": _largest_real_eigenvalue(
                        model, v, x[b], y[b]
                    ),
                    "distance_to_dynamics": gap,
                }
            )
    conv = [r for r in rows if r["converged"]]
    saddles = [r for r in conv if r["max_re_eigenvalue"] > 0]
    return {
        "state": state,
        "images": len(rows),
        "anderson_converged": len(conv),
        "anderson_saddles": len(saddles),
        "saddles_flagged": sum(r["flagged"] for r in saddles),
        "false_alarms": sum(r["flagged"] and r["max_re_eigenvalue"] <= 0 for r in conv),
        "after_unstable": sum(r["after_max_re_eigenvalue"] > 0 for r in rows),
        "after_not_converged": sum(not r["after_converged"] for r in rows),
        "other_stable_state": sum(r["distance_to_dynamics"] > 0.1 for r in rows),
        "rows": rows,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| state | images | Anderson converged | of which saddles | flagged by the "
        "check | false alarms | unstable after the free phase | not converged after |"
        " another state than the dynamics' |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['state']} | {r['images']} | {r['anderson_converged']} | "
            f"{r['anderson_saddles']} | {r['saddles_flagged']} | {r['false_alarms']} | "
            f"{r['after_unstable']} | {r['after_not_converged']} | "
            f"{r['other_stable_state']} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6))
    for ax, res in zip(np.atleast_1d(axes), results):
        before = [r["max_re_eigenvalue"] for r in res["rows"]]
        after = [r["after_max_re_eigenvalue"] for r in res["rows"]]
        ax.scatter(range(len(before)), before, s=8, label="Anderson alone")
        ax.scatter(range(len(after)), after, s=8, marker="x", label="free phase")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("image")
        ax.set_ylabel("largest Re λ of the Jacobian")
        ax.set_title(f"{res['state']}: {res['anderson_saddles']} saddles")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    results = [measure(state, args.images) for state in ys.STATES]
    for res in results:
        print(
            f"{res['state']:8s} images {res['images']}: Anderson converged "
            f"{res['anderson_converged']}, of which saddles {res['anderson_saddles']} "
            f"(flagged {res['saddles_flagged']}, false alarms "
            f"{res['false_alarms']}); after the free phase: unstable "
            f"{res['after_unstable']}, not converged {res['after_not_converged']}, "
            f"another stable state than the dynamics' {res['other_stable_state']}"
        )
    out = {
        "machine": machine(),
        "versions": versions(),
        "seconds": time.perf_counter() - begin,
        "results": results,
    }
    (args.out / "saddles.json").write_text(json.dumps(out, indent=1))
    (args.out / "saddles.md").write_text(table(results))
    plot(results, args.out / "saddles.png")


if __name__ == "__main__":
    main()
