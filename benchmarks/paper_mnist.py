"""Table 1 of Laborieux & Zenke (NeurIPS 2022) on real MNIST: the paper's
784-256-256-10 network trained with each rule, without and with neuron noise
(benchmarks/README.md, "Table 1 on real MNIST")."""

import json
import statistics
import time

import _harness as h
import numpy as np

import holoode


# name: (label, `holoode.train` overrides of the mnist-mlp preset, the paper's
# test error in % without / with noise σ = 0.04: Table 1, mean of 3 seeds, best
# epoch; None where the paper has no number, "fails" where it reports failure).
ROWS = {
    "bp": ("backprop (implicit differentiation)", dict(rule="bp"), (None, None)),
    "ep0.1": ("classic EP β=0.1", dict(rule="ep", beta=0.1), (1.87, "fails")),
    "ep0.4": ("classic EP β=0.4", dict(rule="ep", beta=0.4), (2.24, 3.01)),
    "hep": ("hEP N=10, |β|=0.4", dict(rule="hep", num_points=10), (1.97, 1.96)),
    "continuous": ("continuous hEP", dict(rule="continuous", beta=0.4), (2.05, 1.91)),
}
NOISE = 0.04
# Protocols: epochs, steps per epoch (batch 20), seeds, and the largest projected
# training time of one run before a row is reported as too slow with its step time.
PROTOCOLS = {
    "quick": dict(epochs=3, steps_per_epoch=250, seeds=(0,), budget_s=1200.0),
    "full": dict(epochs=50, steps_per_epoch=None, seeds=(0, 1, 2), budget_s=None),
}


def step_times(kwargs, steps: int) -> list[float]:
    """The first `steps` step times of a run (the first, which compiles, left out)."""
    stamps = []
    holoode.train(
        callback=lambda _: stamps.append(time.perf_counter()),
        stop_after_steps=steps + 1,
        **kwargs,
    )
    return [b - a for a, b in zip(stamps, stamps[1:])]


def one_run(kwargs, seed) -> dict:
    stamps = []
    stamp = lambda _: stamps.append(time.perf_counter())  # noqa: E731
    result = holoode.train(callback=stamp, **(kwargs | dict(seed=seed)))
    gaps = np.diff(stamps)
    per_epoch = result.steps // result.config.epochs
    # Steps that end an epoch also evaluate; the first compiles.
    plain = [g for i, g in enumerate(gaps) if (i + 2) % per_epoch]
    curve = [
        (r["epoch"], r["test_accuracy"])
        for r in result.history
        if r.get("test_accuracy") is not None
    ]
    best = max(acc for _, acc in curve)
    return dict(
        seed=seed,
        curve=curve,
        best_error=100 * (1 - best),
        final_error=100 * (1 - result.test_accuracy),
        skipped=result.skipped_steps,
        steps=result.steps,
        skip_reasons=result.skip_reasons,
        step_s=statistics.median(plain),
        seconds=result.seconds,
    )


def measure(args):
    name = "full" if args.full else "quick"
    protocol = dict(PROTOCOLS[name])
    for key in ("epochs", "steps_per_epoch", "seeds", "budget_s"):
        if getattr(args, key) is not None:
            protocol[key], name = getattr(args, key), "custom"
    base = holoode.PRESETS["mnist-mlp"].to_dict() | dict(epochs=protocol["epochs"])
    base |= dict(steps_per_epoch=protocol["steps_per_epoch"], eval_every=1)
    rows, keys = [], args.rules.split(",")
    if unknown := set(keys) - set(ROWS):
        raise SystemExit(f"unknown --rules {sorted(unknown)}; known: {list(ROWS)}")
    for key in keys:
        label, overrides, paper = ROWS[key]
        for noise, paper_error in zip((0.0, NOISE), paper):
            if noise and overrides["rule"] == "bp":
                continue
            kwargs = base | overrides | dict(noise_std=noise)
            row = dict(label=label, noise=noise, paper=paper_error, runs=[])
            steps = protocol["epochs"] * (protocol["steps_per_epoch"] or 3000)
            if protocol["budget_s"] is not None:
                probe = statistics.median(step_times(kwargs, 5))
                row["probe_step_s"] = probe
                if probe * steps > protocol["budget_s"]:
                    rows.append(row | dict(too_slow=True))
                    print(label, noise, f"too slow: {probe:.2f} s per step", flush=True)
                    continue
            for seed in protocol["seeds"]:
                try:
                    row["runs"].append(one_run(kwargs, seed))
                except holoode.TrainingStopped as e:  # a finding, kept as such
                    row["stopped"] = str(e).splitlines()[:2]
                    print(label, noise, "stopped:", row["stopped"], flush=True)
                    break
                print(
                    label,
                    noise,
                    {k: v for k, v in row["runs"][-1].items() if k != "curve"},
                    flush=True,
                )
            rows.append(row)
    record = dict(protocol=name, settings=protocol, rows=rows)
    return merged(args, record, keys) if args.update else record


def merged(args, record, keys) -> dict:
    """The record in `--out` with the rows of `keys` replaced by the new ones (same
    protocol only); each row keeps the date of the run that measured it."""
    path = args.out / "paper_mnist.json"
    if not path.exists():
        raise SystemExit(f"--update needs an earlier record in {path}; run without it")
    old = json.loads(path.read_text("utf-8"))
    if old["settings"] != json.loads(json.dumps(record["settings"])):
        raise SystemExit(
            f"--update: the record in {path} used the protocol {old['settings']}, "
            f"not {record['settings']}; rerun every row instead"
        )
    now = time.strftime("%Y-%m-%d")
    new = {(r["label"], r["noise"]): r | dict(measured=now) for r in record["rows"]}
    labels = {ROWS[k][0] for k in keys}
    kept = [r for r in old["rows"] if r["label"] not in labels]
    order = [label for label, _, _ in ROWS.values()]
    rows = sorted(
        kept + list(new.values()), key=lambda r: (order.index(r["label"]), r["noise"])
    )
    return record | dict(rows=rows, updated=sorted(labels))


def error_cell(row):
    if row.get("too_slow"):
        return f"too slow ({row['probe_step_s']:.2f} s per step)"
    if row.get("stopped"):
        return "stopped: " + " ".join(line.strip() for line in row["stopped"])
    errors = [r["best_error"] for r in row["runs"]]
    if len(errors) == 1:
        return f"{errors[0]:.2f}"
    return f"{np.mean(errors):.2f} ± {np.std(errors):.2f}"


def report(record):
    out = []
    for row in record["rows"]:
        runs = row["runs"]
        skipped = sum(r["skipped"] for r in runs)
        total = sum(r["steps"] for r in runs)
        step = [r["step_s"] for r in runs] or [row.get("probe_step_s")]
        paper = row["paper"]
        out.append(
            [
                row["label"],
                f"{row['noise']:g}",
                error_cell(row),
                "—" if paper is None else str(paper),
                f"{100 * skipped / total:.1f}%" if total else "—",
                "—" if None in step else f"{20 / statistics.median(step):.0f}",
            ]
        )
    columns = ["rule", "noise σ", "test error %", "paper", "skipped steps"]
    text = h.table([*columns, "samples/s"], out, "lrrrrr")
    fig, axes = h.figure(size=(7, 4.5))
    ax = axes[0, 0]
    for row in record["rows"]:
        for run in row["runs"]:
            epochs, acc = zip(*run["curve"])
            style = "--" if row["noise"] else "-"
            ax.plot(
                epochs,
                [100 * (1 - a) for a in acc],
                style,
                marker="o",
                label=f"{row['label']}{' σ=0.04' if row['noise'] else ''}",
            )
    ax.set(
        xlabel="epoch",
        ylabel="test error %",
        yscale="log",
        title=f"real MNIST, {record['protocol']} protocol",
    )
    ax.legend(fontsize=7)
    return text, fig


def main(argv=None):
    p = h.parser(__doc__, full=True)
    p.add_argument("--rules", default=",".join(ROWS), help="comma-separated rows")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--seeds", type=lambda s: tuple(map(int, s.split(","))))
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="a row whose projected run exceeds it reports its step time",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="re-measure only --rules, keeping the other rows of the record in --out",
    )
    return h.run("paper_mnist", p, measure, report, argv)


if __name__ == "__main__":
    main()
