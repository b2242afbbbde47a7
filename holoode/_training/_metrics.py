"""Metrics on disk (JSONL, mirrored as CSV) and the live progress line."""

import csv
import io
import json
import math
import os
import pathlib
import sys


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
            for record in _read_records(self.jsonl):
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
        try:
            with self.jsonl.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise _write_error(self.jsonl, e) from e
        self._write_csv()

    def _rewrite(self) -> None:
        text = "".join(json.dumps(record) + "\n" for record in self.records)
        _write_atomic(self.jsonl, text)
        self._write_csv()

    def _write_csv(self) -> None:
        rows = [_flat(record) for record in self.records]
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, columns)
        writer.writeheader()
        writer.writerows(rows)
        _write_atomic(self.dir / "metrics.csv", buffer.getvalue())


def _write_error(path: pathlib.Path, e: OSError) -> OSError:
    return OSError(
        e.errno,
        f"Cannot write {str(path)!r}: {e.strerror or e}. Free disk space or make the "
        "run directory writable (or choose another --run-dir).",
    )


def _write_atomic(path: pathlib.Path, text: str) -> None:
    """Write `text` to `path.tmp`, then rename it over `path`: a full disk leaves the
    old file and no temporary one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, e) from e


def _read_records(path: pathlib.Path) -> list[dict]:
    """The records of a `metrics.jsonl`. A partial last line (the run was stopped
    while writing it) is dropped with a note on stderr; a damaged line elsewhere
    raises `ValueError` naming the file and the line."""
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                print(
                    f"holoode: {str(path)!r}: dropped a partial last line ({len(line)} "
                    "characters; the run was stopped while writing it). The records "
                    "before it, and the checkpoint, are intact.",
                    file=sys.stderr,
                )
                break
            raise ValueError(
                f"{str(path)!r} line {number} is not a JSON record: {line[:80]!r}. "
                "Fix: repair or delete that line."
            ) from None
    return records


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
    return _read_records(path)


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
