"""Run every benchmark: `python -m benchmarks` (small sizes, minutes on a laptop
CPU) or `python -m benchmarks --full` (the large sizes, meant for a GPU).

Each benchmark runs in its own Python process (so that one script's JAX settings,
e.g. `jax_enable_x64`, cannot leak into another's timings) with its own small or
full flag, and writes its JSON, plot and table to `--out` (default
`runs/benchmarks/`, so that a run never overwrites the results committed in
`benchmarks/results/`, which come from each script's documented command; pass
`--out benchmarks/results` to refresh those). A benchmark whose script does not
exist is skipped with a message; one that fails is reported and the others still
run. The exit code is non-zero if any benchmark failed.

Small size: the script's default, or `--quick` for scripts whose default is
large (they define a `--quick` flag: `core_speed`, `continuous`). Full size:
`--full`, or the script's default for scripts without that flag (`core_speed`).

Usage:

    python -m benchmarks                       # every benchmark, small size
    python -m benchmarks --full                # every benchmark, full size
    python -m benchmarks --only solvers,depth  # a subset
    python -m benchmarks --list                # what would run, with arguments
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# In the order they run: the quick ones first, so a broken setup shows early.
BENCHMARKS = (
    "exactness",
    "solvers",
    "stability",
    "depth",
    "core_speed",
    "saddles",
    "convnet_speed",
    "continuous",
    "training",
)


def arguments(name: str, full: bool) -> list[str] | None:
    """The size flag for benchmark `name`, or `None` if its script is missing."""
    path = HERE / f"{name}.py"
    if not path.exists():
        return None
    source = path.read_text()
    if full:
        return ["--full"] if '"--full"' in source else []
    return ["--quick"] if '"--quick"' in source else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="large sizes (GPU)")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated subset of {list(BENCHMARKS)}"
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "runs" / "benchmarks"),
        help="output folder for every script",
    )
    parser.add_argument("--list", action="store_true", help="print the plan and stop")
    args = parser.parse_args(argv)
    names = BENCHMARKS if args.only is None else tuple(args.only.split(","))
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; known: {list(BENCHMARKS)}")

    summary = []
    start = time.perf_counter()
    for name in names:
        flags = arguments(name, args.full)
        if flags is None:
            print(f"== {name}: skipped (benchmarks/{name}.py does not exist)")
            summary.append(dict(name=name, status="skipped"))
            continue
        command = [sys.executable, "-m", f"benchmarks.{name}", *flags]
        command += ["--out", args.out]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        if args.list:
            continue
        t0 = time.perf_counter()
        code = subprocess.call(command, cwd=ROOT)
        seconds = time.perf_counter() - t0
        status = "ok" if code == 0 else f"failed (exit code {code})"
        print(f"== {name}: {status} in {seconds:.0f} s", flush=True)
        summary.append(dict(name=name, status=status, seconds=seconds, args=flags))
    if args.list:
        return 0
    total = time.perf_counter() - start
    print(f"\n{'benchmark':15s} {'status':28s} seconds")
    for s in summary:
        seconds = f"{s['seconds']:.0f}" if "seconds" in s else ""
        print(f"{s['name']:15s} {s['status']:28s} {seconds}")
    print(f"total {total:.0f} s")
    record = dict(full=args.full, benchmarks=summary, total_s=total)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "run_all.json").write_text(json.dumps(record, indent=2) + "\n")
    return int(any(s["status"].startswith("failed") for s in summary))


if __name__ == "__main__":
    sys.exit(main())
