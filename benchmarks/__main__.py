"""Run every benchmark, each in its own process (so that no script's JAX settings
leak into another's timings), at its small size (`--quick` where its default is
large) or with `--full`, writing to `--out` (see benchmarks/README.md)."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
# In the order they run, quick ones first: (small flags, full flags).
BENCHMARKS = {
    "exactness": ([], ["--full"]),
    "solvers": ([], ["--full"]),
    "stability": ([], ["--full"]),
    "depth": ([], ["--full"]),
    "core_speed": (["--quick"], []),
    "continuous": (["--quick"], []),
    "saddles": ([], []),
    "convnet_speed": ([], ["--full"]),
    "noise": (["--quick"], ["--full"]),
    "training": ([], ["--full"]),
    "paper_mnist": ([], ["--full"]),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="large sizes (GPU)")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated")
    p.add_argument("--out", default=str(ROOT / "runs" / "benchmarks"))
    p.add_argument("--list", action="store_true", help="print the plan and stop")
    args = p.parse_args(argv)
    if unknown := set(names := args.only.split(",")) - set(BENCHMARKS):
        p.error(f"unknown benchmarks {sorted(unknown)}; known: {list(BENCHMARKS)}")
    summary, start = [], time.perf_counter()
    for name in names:
        flags = [*BENCHMARKS[name][args.full], "--out", args.out]
        command = [sys.executable, "-m", f"benchmarks.{name}", *flags]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        if not args.list:  # a failing script is reported, the others still run
            t0, code = time.perf_counter(), subprocess.call(command, cwd=ROOT)
            status = "ok" if code == 0 else f"failed (exit code {code})"
            seconds = time.perf_counter() - t0
            print(f"== {name}: {status} in {seconds:.0f} s", flush=True)
            summary.append(dict(name=name, status=status, seconds=seconds, args=flags))
    if not args.list:
        record = dict(full=args.full, benchmarks=summary)
        record["total_s"] = time.perf_counter() - start
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "run_all.json").write_text(json.dumps(record, indent=2))
    return int(any(s["status"] != "ok" for s in summary))


if __name__ == "__main__":
    sys.exit(main())
