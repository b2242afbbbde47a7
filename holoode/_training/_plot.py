"""Training curves of a run directory as a PNG."""

import json
import math
import pathlib

from ._metrics import read_metrics


def plot_run(run_dir, path=None) -> pathlib.Path:
    """Draw the curves of a run written by `holoode train --run-dir RUN_DIR`.

    Three panels against the epoch: the training loss (mean over the epoch's
    successful steps) and the test loss; the test top-1 and top-k accuracy; the
    cumulative number of skipped steps. Uses matplotlib's Agg canvas directly,
    without touching the global backend.

    **Arguments:**

    - `run_dir`: the run directory (it holds `metrics.jsonl`).
    - `path`: the output file (default `RUN_DIR/curves.png`).

    **Returns:** the path of the image.
    """
    run_dir = pathlib.Path(run_dir)
    records = [r for r in read_metrics(run_dir) if "epoch" in r and "train_loss" in r]
    if not records:
        raise ValueError(f"{str(run_dir)!r} has no completed epoch to plot yet.")
    title = run_dir.name
    config_file = run_dir / "config.json"
    if config_file.is_file():
        c = json.loads(config_file.read_text())
        title = f"{c.get('preset')}: {c.get('dataset')}, rule {c.get('rule')}"
    fig = _figure(records, title)
    out = run_dir / "curves.png" if path is None else pathlib.Path(path)
    fig.savefig(out, dpi=110)
    return out


def _figure(records: list[dict], title: str):
    """The three panels of `plot_run` for the epoch records."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_skip = fig.subplots(1, 3)

    def series(key):
        pts = [(r["epoch"], r[key]) for r in records if key in r]
        pts = [(e, v) for e, v in pts if v is not None and math.isfinite(v)]
        return [e for e, _ in pts], [v for _, v in pts]

    losses = series("train_loss")[1] + series("test_loss")[1]
    ax_loss.plot(
        *series("train_loss"), "o-" if len(records) == 1 else "-", label="train"
    )
    ax_loss.plot(*series("test_loss"), "o-", label="test")
    ax_loss.set_ylabel("cross-entropy")
    if losses and min(losses) > 0:
        ax_loss.set_yscale("log")
        if max(losses) < 2 * min(losses):  # less than a factor 2: a decade around
            ax_loss.set_ylim(min(losses) / 3, max(losses) * 3)
    accuracies = _percent(series("test_accuracy"))[1] + _percent(series("test_top5"))[1]
    ax_acc.plot(*_percent(series("test_accuracy")), "o-", label="top-1")
    ax_acc.plot(*_percent(series("test_top5")), "s--", label="top-5")
    ax_acc.set_ylabel("test accuracy (%)")
    if accuracies and max(accuracies) - min(accuracies) < 5:
        # A flat or single-point curve: a 10-point window, not a hair-thin one.
        middle = (max(accuracies) + min(accuracies)) / 2
        low = min(max(middle - 5, 0), 90)
        ax_acc.set_ylim(low, low + 10)
    skipped = series("skipped_steps")
    ax_skip.plot(*skipped, drawstyle="steps-post")
    ax_skip.set_ylabel("skipped steps (cumulative)")
    ax_skip.set_ylim(0, max([1, *skipped[1]]) * 1.1)
    ax_skip.yaxis.set_major_locator(MaxNLocator(integer=True))
    epochs = sorted({r["epoch"] for r in records})
    for ax in (ax_loss, ax_acc, ax_skip):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    ax_loss.legend()
    ax_acc.legend()
    fig.suptitle(title)
    return fig


def _percent(xy):
    x, y = xy
    return x, [100 * v for v in y]
