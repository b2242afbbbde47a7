"""The `holoode train` and `holoode plot` commands."""

import csv
import json

import pytest

from holoode._cli import main


TINY = ["--hidden", "16", "--epochs", "1", "--set", "steps_per_epoch=4",
        "--set", "batch_size=32", "--no-progress"]  # fmt: skip


@pytest.mark.slow
def test_train_compare_plot_and_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--run-dir", str(run), "--compare", "bp"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy: bp" in out and "vs hep" in out
    # The first step's compilation is announced before it starts, and timed.
    assert out.index("compiling the training step") < out.index("compiled and ran")
    config = json.loads((run / "config.json").read_text())
    assert config["hidden"] == [16] and config["rule"] == "hep"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["step"] == "4"
    assert 0 <= float(rows[0]["test_accuracy"]) <= 1
    assert main(["plot", str(run)]) == 0
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --resume alone takes the run's own config.json (here: already finished).
    assert main(["train", "--run-dir", str(run), "--resume", "--no-progress"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_bad_options_exit_with_a_message(tmp_path, capsys):
    assert main(["train", "--set", "learning_rat=0.1"]) == 2
    err = capsys.readouterr().err
    assert "learning_rat" in err and "Valid keys:" in err and "learning_rate" in err
    config = tmp_path / "c.toml"
    config.write_text("betta = 0.1\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "betta" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "none"), "--resume"]) == 2
    assert "No checkpoint" in capsys.readouterr().err
    assert (
        main(["train", "--set", "dataset=mnist", "--set", f"data_dir={tmp_path}"]) == 2
    )
    assert "mnist" in capsys.readouterr().err
