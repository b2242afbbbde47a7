"""Training with `holoode.train` and the `holoode train` command.

Run with `python docs/tutorials/training.py`. It trains a small Hopfield MLP on the
embedded digits for a few steps (to keep it short) and writes runs to `runs/` in
the current folder. Drop the `epochs`/`steps_per_epoch` overrides for a full run.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import holoode as ho


# --- 1. From Python: a preset plus overrides ---------------------------------------
# `holoode.PRESETS` holds the named configurations; any TrainConfig field can be
# overridden by keyword.
print("presets:", ", ".join(sorted(ho.PRESETS)))
result = ho.train(
    "digits-mlp",
    hidden=(32,),
    epochs=2,
    steps_per_epoch=15,
    eval_every=1,
    run_dir="runs/digits-hep",
    log=print,
)
print(
    f"hEP: test accuracy {result.test_accuracy:.1%}, "
    f"{result.steps} steps ({result.skipped_steps} skipped) in {result.seconds:.0f} s"
)
assert result.test_accuracy > 0.3  # 10 classes: chance is 10%

# The run directory holds the resolved config, the metrics and a checkpoint.
run = Path("runs/digits-hep")
print("run directory:", sorted(p.name for p in run.iterdir()))
config = json.loads((run / "config.json").read_text())
print("rule:", config["rule"], "| beta:", config["beta"], "| N:", config["num_points"])

# --- 2. From a config file and the command line ------------------------------------
# A TOML file starts from a preset and overrides fields; `--set key=value` overrides
# the file. Here: the backpropagation reference on the same schedule.
Path("runs/digits-bp.toml").write_text(
    'preset = "digits-mlp"\nrule = "bp"\nhidden = [32]\nepochs = 2\neval_every = 1\n'
)
holoode = shutil.which("holoode") or str(Path(sys.executable).with_name("holoode"))
command = (
    "holoode train --config runs/digits-bp.toml --set steps_per_epoch=15"
    " --run-dir runs/digits-bp --no-progress"
)
subprocess.run([holoode, *command.split()[1:]], check=True)
# Draw the training curves of a run (writes RUN_DIR/curves.png).
subprocess.run([holoode, "plot", "runs/digits-hep"], check=True)  # holoode plot DIR
assert (run / "curves.png").is_file()
