"""What the benchmark scripts share: flags, records, tables, timing, plots."""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np

import holoode


RESULTS = Path(__file__).resolve().parent / "results"
STACK = ("jax", "jaxlib", "equinox", "optimistix", "lineax", "diffrax", "optax")


def parser(doc, *, quick=False, full=False, replot=True, states=False, sizes=False):
    """`--out` and, as asked, `--quick`/`--full`, `--replot`, `--states` (of the
    yardstick), `--sizes`/`--batch` (of `digits_problem`)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    size, flag = p.add_mutually_exclusive_group(), dict(action="store_true")
    if quick:
        size.add_argument("--quick", **flag, help="smallest size")
    if full:
        size.add_argument("--full", **flag, help="large size (GPU)")
    if replot:
        p.add_argument("--replot", **flag, help="tables, plot from the JSON in --out")
    if states:
        p.add_argument("--states", nargs="+", choices=("init", "trained"))
    if sizes:
        p.add_argument("--sizes", default=None, help="e.g. 64,32,32,10")
        p.add_argument("--batch", type=int, default=None)
    return p


def run(name: str, p, measure, report, argv=None) -> dict:
    """Parse the flags; `measure(args) -> dict` (skipped with `--replot`, which
    reads `NAME.json` back) is recorded with the machine, versions and wall time;
    `report(record) -> (markdown or None, figure or None)` gives NAME.md, NAME.png."""
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "replot", False):
        record = json.loads((args.out / f"{name}.json").read_text("utf-8"))
    else:
        command = " ".join([f"python -m benchmarks.{name}", *(argv or sys.argv[1:])])
        start, info = time.perf_counter(), machine()
        record = dict(benchmark=name, command=command, **measure(args), machine=info)
        record |= dict(versions=versions(), wall_time_s=time.perf_counter() - start)
        text = json.dumps(record, indent=1, ensure_ascii=False)
        (args.out / f"{name}.json").write_text(text + "\n", "utf-8")
    text, fig = report(record)
    if text is not None:
        (args.out / f"{name}.md").write_text(text.rstrip() + "\n", "utf-8")
        print(text)
    if fig is not None:
        fig.savefig(args.out / f"{name}.png", dpi=120)
    print(f"wrote {name} results to {args.out}")
    return record


def machine() -> dict:
    info = open("/proc/cpuinfo").readlines() if os.path.exists("/proc/cpuinfo") else []
    cpu = [x.split(":", 1)[1].strip() for x in info if x.startswith("model name")]
    out = dict(platform=platform.platform(), cpu=(cpu or [platform.processor()])[0])
    out |= dict(cpu_count=os.cpu_count(), load_average_at_start=os.getloadavg())
    return out | dict(jax_backend=jax.default_backend(), jax_devices=str(jax.devices()))


def versions() -> dict:
    out = dict(python=platform.python_version(), holoode=holoode.__version__)
    return out | {m: importlib.metadata.version(m) for m in (*STACK, "numpy")}


def table(columns, rows, align=None) -> str:
    """A markdown table; `align`: `l` or `r` per column (default: the first left)."""
    align = align or "l" + "r" * (len(columns) - 1)
    line = lambda cells: (
        "| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |"
    )
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    return "\n".join([line(columns), rule, *map(line, rows)])


def timed(fn):
    """`(fn(), seconds)`, waiting for the computation to finish."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def interleaved(calls: dict, rounds: int, budget=float("inf")) -> dict:
    """Time `{name: fn}`: a first call each, then `rounds` rounds round-robin (a row
    stops once its calls took `budget` s). Per name: `out`, `first_s`, `times_s`,
    `time_s` (median), `compile_s` (first − median); or `error` if it raised."""
    rows = {}
    for name, fn in calls.items():
        try:
            out, first = timed(fn)
            rows[name] = dict(out=out, first_s=first, times_s=[])
        except Exception as e:  # a combination the library refuses: say why
            rows[name] = dict(error=f"{type(e).__name__}: {str(e).splitlines()[0]}")
        print(f"  {name}: {rows[name].get('error') or f'{first:.1f} s'}", flush=True)
    timed_rows = {k: v for k, v in rows.items() if "error" not in v}
    for i in range(rounds):
        for name, row in timed_rows.items():
            if i == 0 or sum(row["times_s"]) < budget:
                row["times_s"].append(timed(calls[name])[1])
    for row in timed_rows.values():
        row["time_s"] = statistics.median(row["times_s"])
        row["compile_s"] = max(row["first_s"] - row["time_s"], 0.0)
    return rows


def result_name(result) -> str:
    """The name of a `holoode.RESULTS` member."""
    items = holoode.RESULTS._name_to_item.items()
    return next((n for n, item in items if bool(result == item)), "unknown")


def flat(tree) -> np.ndarray:
    """The array leaves of a PyTree (or an array) as one float64 vector."""
    leaves = jtu.tree_leaves(eqx.filter(tree, eqx.is_array))
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in leaves])


def rel_error(grads, reference) -> float:
    g, r = flat(grads), flat(reference)
    return float(np.linalg.norm(g - r) / np.linalg.norm(r))


def cosine(grads, reference) -> float:
    g, r = flat(grads), flat(reference)
    return float(g @ r / (np.linalg.norm(g) * np.linalg.norm(r)))


def cast(model, dtype):
    """`model` with its inexact array leaves cast to `dtype`."""
    to = lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a
    return jtu.tree_map(to, model)


def digits(batch: int, seed: int = 0, dtype=jnp.float64):
    """`batch` of scikit-learn's 8×8 digits drawn with `seed`, flat, in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = np.random.default_rng(seed).choice(len(data.target), batch, replace=False)
    x, y = data.data[idx] / 16.0, data.target[idx]
    return jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32)


def digits_problem(args, sizes, batch):
    """`(model, x, y, cost, exact gradient)`: float64 `HopfieldMLP(sizes)` (key 0),
    `batch` digits, implicit differentiation (LU) at Newton equilibria to 1e-12;
    `--sizes`/`--batch` override (small nets: first pixels, labels mod classes)."""
    args.sizes = tuple(map(int, args.sizes.split(","))) if args.sizes else sizes
    args.batch = args.batch or batch
    model = holoode.nn.HopfieldMLP(args.sizes, key=jax.random.key(0), dtype=jnp.float64)
    x, y = digits(args.batch)
    x, y, cost = x[:, : args.sizes[0]], y % args.sizes[-1], holoode.CrossEntropy()
    exact = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    solver = holoode.RootFind(rtol=1e-12, atol=1e-12)
    grads, _ = holoode.gradient(exact, model, x, y, cost=cost, solver=solver)
    return model, x, y, cost, grads


def figure(rows=1, cols=1, size=(12, 4.5), **kw):
    """`(figure, axes)`, drawn off screen; `run` saves the figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)
