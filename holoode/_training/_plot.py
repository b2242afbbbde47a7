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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = pathlib.Path(run_dir)
    records = [r for r in read_metrics(run_dir) if "epoch" in r and "train_loss" in r]
    if not records:
        raise ValueError(f"{str(run_dir)!r} has no completed epoch to plot yet.")
    title = run_dir.name
    config_file = run_dir / "config.json"
    if config_file.is_file():
        c = json.loads(config_file.read_text())
        title = f"{c.get('preset')}: {c.get('dataset')}, rule {c.get('rule')}"
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_skip = fig.subplots(1, 3)

    def series(key):
        pts = [(r["epoch"], r[key]) for r in records if key in r]
        pts = [(e, v) for e, v in pts if v is not None and math.isfinite(v)]
        return [e for e, _ in pts], [v for _, v in pts]

    ax_loss.plot(*series("train_loss"), label="train")
    ax_loss.plot(*series("test_loss"), "o-", label="test")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_yscale("log")
    ax_acc.plot(*_percent(series("test_accuracy")), "o-", label="top-1")
    ax_acc.plot(*_percent(series("test_top5")), "s--", label="top-5")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_skip.plot(*series("skipped_steps"), drawstyle="steps-post")
    ax_skip.set_ylabel("skipped steps (cumulative)")
    for ax in (ax_loss, ax_acc, ax_skip):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.legend()
    fig.suptitle(title)
    out = run_dir / "curves.png" if path is None else pathlib.Path(path)
    fig.savefig(out, dpi=110)
    return out


def _percent(xy):
    x, y = xy
    return x, [100 * v for v in y]
