"""Benchmark scripts; `python -m benchmarks` runs them all (see README.md)."""

import os
import sys


# `import _harness` as in `python benchmarks/NAME.py`, also for `-m benchmarks.NAME`.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
