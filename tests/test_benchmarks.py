"""The solver-choice and exactness benchmarks run end to end on a tiny setting and
write complete, finite records (the numbers themselves are the benchmarks' job)."""

import json
import math

import pytest

from benchmarks import exactness, solvers


@pytest.mark.slow
def test_solvers_benchmark_writes_finite_record(tmp_path):
    solvers.main(
        [
            "--rules=hEP N=4",
            "--solvers=FixedPoint",
            "--sizes=8,4,4,3",
            "--batch=2",
            "--repeats=1",
            f"--out={tmp_path}",
        ]
    )
    record = json.loads((tmp_path / "solvers.json").read_text())
    assert {"settings", "rows", "machine", "wall_time_s"} <= set(record)
    (row,) = record["rows"]
    assert (row["rule"], row["solver"], row["result"]) == (
        "hEP N=4",
        "FixedPoint",
        "successful",
    )
    for key in ("compile_s", "time_s", "field_evals", "rel_error"):
        assert math.isfinite(row[key]) and row[key] >= 0, key
    # hEP with N = 4 at |β| = 0.1 is accurate but not exact (aliasing ~ |β|^4).
    assert 1e-12 < row["rel_error"] < 1e-2
    # Free phase plus three nudged points, each at least one step plus the residual.
    assert row["field_evals"] >= 4 * 2
    assert (tmp_path / "solvers.png").stat().st_size > 0
    assert "| hEP N=4 | FixedPoint |" in (tmp_path / "solvers.md").read_text()


@pytest.mark.slow
def test_exactness_benchmark_writes_finite_record(tmp_path):
    exactness.main(
        [
            "--sizes=8,4,4,3",
            "--batch=2",
            "--num-points=4",
            "--betas=0.1",
            "--ep-betas=",
            f"--out={tmp_path}",
        ]
    )
    record = json.loads((tmp_path / "exactness.json").read_text())
    assert {"settings", "hep", "classic", "fits", "safe_beta"} <= set(record)
    (row,) = record["hep"]
    assert row["result"] == "successful"
    for key in ("rel_error", "error_estimate", "max_radius_ratio"):
        assert math.isfinite(row[key]) and row[key] >= 0, key
    assert 1e-12 < row["rel_error"] < 1e-2
    assert record["safe_beta"] > 0
    assert (tmp_path / "exactness.png").stat().st_size > 0
