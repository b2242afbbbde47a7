"""End-to-end training: throughput and time-to-accuracy of the learning rules, and
holomorphic EP against backpropagation over seeds, with `holoode.train`.

Three experiments, run one after another in one process:

1. **Digits, side by side.** The `digits-mlp` preset (Hopfield MLP 64-128-10,
   batch 32, SGD lr 0.1 momentum 0.9, float32) trained with `hep` (|β| = 0.5,
   N = 4), `continuous` (ContinuousHEP, |β| = 0.5, period 50, one period, Tsit5
   to steady state), `ep` (ClassicEP one-sided, β = 0.5) and `bp`
   (ImplicitDifferentiation), evaluated after every epoch. Reported: training
   throughput (batch size / median step time, compile excluded), the wall time
   until the test accuracy first reaches 90% and 95% (from the start of the loop:
   compile and evaluations included), and the final test accuracy.
2. **MNIST-shaped throughput.** Random inputs in [0, 1] of shape 28×28×1 and random
   labels (so no accuracy), the `mnist-mlp` network 784-256-256-10, batch 20, a
   fixed number of steps per rule; throughput as above.
3. **hEP vs backprop, 3 seeds.** The `digits-mlp` preset unchanged (30 epochs),
   rules `hep` and `bp`, seeds 0, 1, 2: final test accuracy, mean and spread.

Usage:

    python benchmarks/training.py           # default size (epochs 10 in part 1)
    python benchmarks/training.py --full    # 30 epochs in part 1, more steps in 2
    python benchmarks/training.py --out DIR # where training.json/.png/.md go
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
    import holoode as ho
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import holoode as ho

import numpy as np


RULES = ("hep", "continuous", "ep", "bp")


def _timed_train(**kwargs):
    """`holoode.train` with the wall time of every step recorded."""
    stamps = []
    result = ho.train(
        callback=lambda info: stamps.append(time.perf_counter()), **kwargs
    )
    # The first step includes compilation; gaps at epoch ends include evaluation.
    steps_per_epoch = result.steps // result.config.epochs
    gaps = [
        b - a
        for i, (a, b) in enumerate(zip(stamps[:-1], stamps[1:]))
        if (i + 1) % steps_per_epoch != 0
    ]
    step_s = statistics.median(gaps)
    return result, step_s


def digits_side_by_side(epochs: int) -> list[dict]:
    rows = []
    for rule in RULES:
        result, step_s = _timed_train(rule=rule, epochs=epochs, eval_every=1)
        curve = [
            (r["seconds"], r["test_accuracy"])
            for r in result.history
            if "test_accuracy" in r
        ]

        def reach(level):
            return next((t for t, acc in curve if acc >= level), None)

        rows.append(
            {
                "rule": rule,
                "examples_per_s": result.config.batch_size / step_s,
                "step_ms": 1e3 * step_s,
                "time_to_90": reach(0.90),
                "time_to_95": reach(0.95),
                "final_accuracy": result.test_accuracy,
                "skipped_steps": result.skipped_steps,
                "curve": curve,
            }
        )
        print(f"digits {rule:10s} {rows[-1]['examples_per_s']:8.0f} ex/s  "
              f"to 95%: {rows[-1]['time_to_95']}  final "
              f"{100 * result.test_accuracy:.2f}%", flush=True)  # fmt: skip
    return rows


def mnist_shaped_throughput(steps: int) -> list[dict]:
    rng = np.random.default_rng(0)
    n_train = 20 * steps

    def source(n, split):
        x = rng.uniform(size=(n, 28, 28, 1)).astype(np.float32)
        y = rng.integers(0, 10, size=n)
        return ho.data.from_arrays(x, y, num_classes=10, name="random", split=split)

    sources = (source(n_train, "train"), source(100, "test"))
    rows = []
    for rule in RULES:
        kwargs = dict(ho.PRESETS["mnist-mlp"].to_dict(), rule=rule, epochs=1)
        kwargs.update(steps_per_epoch=steps, eval_batch_size=100)
        _, step_s = _timed_train(sources=sources, **kwargs)
        rows.append(
            {"rule": rule, "examples_per_s": 20 / step_s, "step_ms": 1e3 * step_s}
        )
        print(f"mnist-shaped {rule:10s} {20 / step_s:8.0f} ex/s", flush=True)
    return rows


def seeds_hep_vs_bp(seeds=(0, 1, 2)) -> dict:
    out = {}
    for rule in ("hep", "bp"):
        accs = []
        for seed in seeds:
            result = ho.train(rule=rule, seed=seed)
            accs.append(result.test_accuracy)
            print(f"seed {seed} {rule}: {100 * result.test_accuracy:.2f}%", flush=True)
        out[rule] = accs
    return out


def _fmt(t):
    return "not reached" if t is None else f"{t:.1f}"


def markdown(record) -> str:
    lines = [
        "| rule | digits ex/s | step [ms] | time to 90% [s] | time to 95% [s] | "
        f"final test acc. ({record['settings']['epochs']} epochs) | skipped steps "
        "| MNIST-shaped ex/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    mnist = {r["rule"]: r for r in record["mnist_shaped"]}
    for r in record["digits"]:
        lines.append(
            f"| {r['rule']} | {r['examples_per_s']:.0f} | {r['step_ms']:.1f} | "
            f"{_fmt(r['time_to_90'])} | {_fmt(r['time_to_95'])} | "
            f"{100 * r['final_accuracy']:.2f}% | {r['skipped_steps']} | "
            f"{mnist[r['rule']]['examples_per_s']:.0f} |"
        )
    seeds = record["seeds"]
    lines += ["", "| rule | seed 0 | seed 1 | seed 2 | mean | std |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for rule, accs in seeds.items():
        cells = " | ".join(f"{100 * a:.2f}%" for a in accs)
        lines.append(
            f"| {rule} | {cells} | {100 * np.mean(accs):.2f}% | "
            f"{100 * np.std(accs):.2f} |"
        )
    gap = 100 * (np.mean(seeds["hep"]) - np.mean(seeds["bp"]))
    lines += ["", f"hEP − bp, mean test accuracy: {gap:+.2f} points."]
    return "\n".join(lines) + "\n"


def plot(record, path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_curve, ax_bar = fig.subplots(1, 2)
    for r in record["digits"]:
        t, acc = zip(*r["curve"])
        ax_curve.plot(t, [100 * a for a in acc], "o-", ms=3, label=r["rule"])
    ax_curve.set_xlabel("wall time [s] (compile and evaluation included)")
    ax_curve.set_ylabel("digits test accuracy [%]")
    ax_curve.set_ylim(80, 100)
    ax_curve.grid(alpha=0.3)
    ax_curve.legend()
    rules = [r["rule"] for r in record["digits"]]
    width = 0.4
    idx = np.arange(len(rules))
    ax_bar.bar(idx - width / 2, [r["examples_per_s"] for r in record["digits"]],
               width, label="digits 64-128-10, batch 32")  # fmt: skip
    ax_bar.bar(idx + width / 2, [r["examples_per_s"] for r in record["mnist_shaped"]],
               width, label="MNIST-shaped 784-256-256-10, batch 20")  # fmt: skip
    ax_bar.set_xticks(idx, rules)
    ax_bar.set_yscale("log")
    ax_bar.set_ylabel("training throughput [examples/s]")
    ax_bar.legend()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    settings = {
        "epochs": 30 if args.full else 10,
        "mnist_steps": 60 if args.full else 20,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    record = {
        "settings": settings,
        "digits": digits_side_by_side(settings["epochs"]),
        "mnist_shaped": mnist_shaped_throughput(settings["mnist_steps"]),
        "seeds": seeds_hep_vs_bp(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_start": load,
            "load_average_end": os.getloadavg()[0],
        },
        "wall_s": time.perf_counter() - start,
    }
    (out / "training.json").write_text(json.dumps(record, indent=2))
    table = markdown(record)
    (out / "training.md").write_text(table)
    plot(record, out / "training.png")
    print(table)
    print(f"wall time {record['wall_s']:.0f} s; load average {load:.2f} → "
          f"{record['machine']['load_average_end']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
