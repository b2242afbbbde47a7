"""Benchmark scripts; `python -m benchmarks` runs them all (see README.md)."""

import os
import sys


# `import _harness` as in `python benchmarks/NAME.py`, also for `-m benchmarks.NAME`.
sys.path.append(os.path.dirname(os.path.abspath(__file__)))
