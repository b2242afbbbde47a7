"""Metrics on disk (JSONL, mirrored as CSV) and the live progress line."""

import csv
import json
import math
import pathlib


class MetricsLog:
    """Appends one JSON record per line to `metrics.jsonl` and rewrites
    `metrics.csv` (the union of all keys as columns) after every record. Without a
    run directory it only keeps the records in memory."""

    def __init__(
        self,
        run_dir=None,
        *,
        resume_step: int | None = None,
        resume_epoch: int | None = None,
    ):
        self.records: list[dict] = []
        self.dir = None if run_dir is None else pathlib.Path(run_dir)
        if self.dir is None:
            return
        self.jsonl = self.dir / "metrics.jsonl"
        if resume_step is not None and self.jsonl.is_file():
            # Records written after the checkpoint belong to the lost future: a
            # later step, or the record of an epoch that the checkpoint (taken on
            # that epoch's last step, before its evaluation) had not completed.
            completed = math.inf if resume_epoch is None else resume_epoch
            for line in self.jsonl.read_text().splitlines():
                record = json.loads(line)
                if (
                    record.get("step", 0) <= resume_step
                    and record.get("epoch", 0) <= completed
                ):
                    self.records.append(record)
        self._rewrite()

    def append(self, record: dict) -> None:
        self.records.append(record)
        if self.dir is None:
            return
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self._write_csv()

    def _rewrite(self) -> None:
        with self.jsonl.open("w") as f:
            for record in self.records:
                f.write(json.dumps(record) + "\n")
        self._write_csv()

    def _write_csv(self) -> None:
        rows = [_flat(record) for record in self.records]
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        with (self.dir / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)


def _flat(record: dict) -> dict:
    """Nested dicts (the skip reasons) as `outer.inner` columns."""
    out = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update({f"{k}.{i}": w for i, w in v.items()})
        else:
            out[k] = v
    return out


def read_metrics(run_dir) -> list[dict]:
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: is {str(run_dir)!r} a run directory "
            "written by `holoode train --run-dir ...`?"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class Progress:
    """A tqdm bar over the training steps with the epoch's running mean loss, the
    latest test accuracy and the skipped steps; silent when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True
            )

    def update(self, loss: float, accuracy: float | None, skipped: int) -> None:
        if self.bar is None:
            return
        postfix = {"loss": f"{loss:.4f}" if math.isfinite(loss) else "nan"}
        if accuracy is not None:
            postfix["test_acc"] = f"{100 * accuracy:.2f}%"
        postfix["skipped"] = skipped
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def write(self, line: str) -> None:
        if self.bar is None:
            print(line)
        else:
            self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
