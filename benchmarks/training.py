"""End-to-end training with `holoode.train`: throughput, time to accuracy, seeds
(benchmarks/README.md, "Training end to end")."""

import statistics
import time

import _harness as h
import numpy as np

import holoode


RULES = ("hep", "continuous", "ep", "bp")


def timed_train(**kwargs):
    """`holoode.train` and its median step time (the first step, which compiles,
    and the steps that end an epoch, which evaluate, left out)."""
    stamps = []
    stamp = lambda _: stamps.append(time.perf_counter())
    result = holoode.train(callback=stamp, **kwargs)
    per_epoch = result.steps // result.config.epochs
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    gaps = [gap for i, gap in enumerate(gaps) if (i + 1) % per_epoch]
    return result, statistics.median(gaps)


def digits_side_by_side(epochs: int) -> list[dict]:
    rows = []
    for rule in RULES:
        result, step_s = timed_train(rule=rule, epochs=epochs, eval_every=1)
        curve = [(r["seconds"], r.get("test_accuracy")) for r in result.history]
        curve = [(t, acc) for t, acc in curve if acc is not None]
        reach = lambda level: next((t for t, acc in curve if acc >= level), None)
        row = dict(rule=rule, examples_per_s=result.config.batch_size / step_s)
        row |= dict(step_ms=1e3 * step_s, time_to_90=reach(0.9), time_to_95=reach(0.95))
        row |= dict(final_accuracy=result.test_accuracy)
        row |= dict(skipped_steps=result.skipped_steps)
        rows.append(row | dict(curve=curve))
        print({k: v for k, v in row.items()}, flush=True)
    return rows


def mnist_shaped_throughput(steps: int) -> list[dict]:
    rng = np.random.default_rng(0)

    def source(n, split):  # random inputs and labels: no accuracy to measure
        x = rng.uniform(size=(n, 28, 28, 1)).astype(np.float32)
        y = rng.integers(0, 10, size=n)
        return holoode.data.from_arrays(
            x, y, num_classes=10, name="random", split=split
        )

    sources, rows = (source(20 * steps, "train"), source(100, "test")), []
    for rule in RULES:
        kwargs = dict(holoode.PRESETS["mnist-mlp"].to_dict(), rule=rule, epochs=1)
        kwargs.update(steps_per_epoch=steps, eval_batch_size=100)
        _, step_s = timed_train(sources=sources, **kwargs)
        rows.append(dict(rule=rule, examples_per_s=20 / step_s, step_ms=1e3 * step_s))
        print(rows[-1], flush=True)
    return rows


def measure(args):
    settings = dict(epochs=30 if args.full else 10, mnist_steps=60 if args.full else 20)
    digits = digits_side_by_side(settings["epochs"])
    mnist = mnist_shaped_throughput(settings["mnist_steps"])
    seeds = {}  # the digits-mlp preset unchanged: 30 epochs
    for rule in ("hep", "bp"):
        seeds[rule] = [holoode.train(rule=rule, seed=s).test_accuracy for s in range(3)]
        print(f"{rule}: {seeds[rule]}", flush=True)
    return dict(settings=settings, digits=digits, mnist_shaped=mnist, seeds=seeds)


def report(record):
    fmt = lambda t: "not reached" if t is None else f"{t:.1f}"
    mnist, rows = {r["rule"]: r["examples_per_s"] for r in record["mnist_shaped"]}, []
    for r in record["digits"]:
        accuracy = f"{100 * r['final_accuracy']:.2f}%"
        rows.append([r["rule"], f"{r['examples_per_s']:.0f}", f"{r['step_ms']:.1f}"])
        rows[-1] += [fmt(r["time_to_90"]), fmt(r["time_to_95"]), accuracy]
        rows[-1] += [r["skipped_steps"], f"{mnist[r['rule']]:.0f}"]
    epochs = record["settings"]["epochs"]
    columns = "rule,digits ex/s,step [ms],time to 90% [s],time to 95% [s],final test "
    columns += f"acc. ({epochs} epochs),skipped steps,MNIST-shaped ex/s"
    seeds, rows2 = record["seeds"], []
    for rule, accs in seeds.items():
        rows2.append([rule, *(f"{100 * a:.2f}%" for a in accs)])
        rows2[-1] += [f"{100 * np.mean(accs):.2f}%", f"{100 * np.std(accs):.2f}"]
    gap = 100 * (np.mean(seeds["hep"]) - np.mean(seeds["bp"]))
    columns2 = ["rule", "seed 0", "seed 1", "seed 2", "mean", "std"]
    text = [h.table(columns.split(","), rows), "", h.table(columns2, rows2), ""]
    text += [f"hEP − bp, mean test accuracy: {gap:+.2f} points."]
    fig, ((ax_curve, ax_bar),) = h.figure(1, 2, size=(11, 4))
    for r in record["digits"]:
        t, acc = zip(*r["curve"])
        ax_curve.plot(t, [100 * a for a in acc], "o-", ms=3, label=r["rule"])
    ax_curve.set(xlabel="wall time [s] (compile and evaluation included)")
    ax_curve.set(ylabel="digits test accuracy [%]", ylim=(80, 100))
    ax_curve.grid(alpha=0.3)
    idx, parts = np.arange(len(record["digits"])), ("digits", "mnist_shaped")
    labels = ("digits 64-128-10, batch 32", "MNIST-shaped 784-256-256-10, batch 20")
    for i, (part, label) in enumerate(zip(parts, labels)):
        speed = [r["examples_per_s"] for r in record[part]]
        ax_bar.bar(idx + (i - 0.5) * 0.4, speed, 0.4, label=label)
    ax_bar.set_xticks(idx, [r["rule"] for r in record["digits"]])
    ax_bar.set(yscale="log", ylabel="training throughput [examples/s]")
    for ax in (ax_curve, ax_bar):
        ax.legend()
    return "\n".join(text), fig


def main(argv=None):
    p = h.parser(__doc__, full=True)
    return h.run("training", p, measure, report, argv)


if __name__ == "__main__":
    main()
