"""`holoode.train`: the training loop around the compiled step."""

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.random as jr

from .. import data as hdata
from . import _build, _checkpoint, _sharding, _step
from ._config import LAUNCH, resolve, TrainConfig
from ._faults import diagnose, TrainingStopped
from ._metrics import MetricsLog, Progress
from ._position import Position
from ._rules import make_rule
from ._sharding import DataParallel


@dataclasses.dataclass
class TrainResult:
    """What `holoode.train` returns.

    **Fields:** `config` (the resolved `TrainConfig`), `model` (the trained
    network), `test_accuracy`, `test_top5`, `test_loss` (the last evaluation),
    `train_loss` (mean over the last epoch's successful steps), `steps` (steps
    taken, skipped ones included), `skipped_steps` and `skip_reasons` (counts by
    `holoode.RESULTS` name), `seconds` (wall time of this call), `history` (the
    metrics records), `run_dir`, `finished` (`False` if stopped by
    `stop_after_steps` or, in a multi-process run, by a preemption notice).
    Indexing by field name (`result["test_accuracy"]`) works too.
    """

    config: TrainConfig
    model: Any
    test_accuracy: float
    test_top5: float
    test_loss: float
    train_loss: float
    steps: int
    skipped_steps: int
    skip_reasons: dict[str, int]
    seconds: float
    history: list[dict]
    run_dir: str | None
    finished: bool

    def __getitem__(self, name: str):
        return getattr(self, name)


def _sources(config: TrainConfig):
    kw = dict(data_dir=config.data_dir)
    return hdata.load(config.dataset, "train", **kw), hdata.load(
        config.dataset, "test", **kw
    )


def evaluate(evaluate_fn, model, loader, dp: DataParallel) -> dict[str, float]:
    """Test metrics over a whole split (padded last batch masked out). The
    compiled evaluation sums over the global batch, so each per-batch sum is
    already reduced over every device and process."""
    sums: dict[str, float] = {}
    for batch in loader.epoch(0):
        out = evaluate_fn(model, *dp.shard(batch.x, batch.y, batch.mask))
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    n = max(sums["count"], 1.0)
    return {
        "test_loss": sums["loss"] / n,
        "test_accuracy": sums["top1"] / n,
        "test_top5": sums["topk"] / n,
        "test_unreached": int(sums["unreached"]),
        "test_examples": int(sums["count"]),
    }


def train(
    config: TrainConfig | str | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    callback: Callable[[dict], None] | None = None,
    stop_after_steps: int | None = None,
    sources=None,
    **overrides,
) -> TrainResult:
    """Train an energy-based network with any learning rule.

    The loop: for each epoch, batches in an order that is a pure function of
    `(seed, epoch, batch)`; one compiled step per batch (gradient by the rule,
    optimiser update), traced once per run; evaluation on the test split every
    `eval_every` epochs and at the end (top-1, top-k, loss, over every example).
    A step whose result is not `holoode.RESULTS.successful` (an equilibrium not
    reached, the continuation lost, a non-finite gradient) leaves the model and
    the optimiser state untouched and is counted with its reason (for holomorphic
    EP a lost continuation is first retried with |β| halved for the examples
    whose circle left their disc, up to `beta_backoff` times);
    `max_consecutive_skips` in a row raise `TrainingStopped` with a diagnosis
    (for holomorphic EP, the estimated safe `|β|` by `holoode.safe_beta`).

    With `run_dir`, the run directory receives `config.json`, `metrics.jsonl` and
    `metrics.csv` (one record per epoch) and `checkpoint.eqx` (model, optimiser
    state, PRNG key, data position, skip counters; every `checkpoint_every` steps,
    at the end, and on `KeyboardInterrupt`). `resume=True` continues from it; the
    result is bit-for-bit the result of an uninterrupted run on the same devices.

    Several processes (one per host) train one model on one global batch of
    `batch_size` with `distributed=True` (see `TrainConfig` and "Training on
    several machines" in the documentation): each reads only its slice of every
    batch, all run the same compiled step, and only process 0 writes the run
    directory. The parameters do not depend on the number of processes (up to
    float32 rounding of the reductions), and a checkpoint resumes with any number
    of them. An exception on one process only ends that process at once, so that
    the others stop instead of waiting for it; `callback` runs on every process.

    **Arguments:**

    - `config`: a `holoode.TrainConfig`, a preset name (`holoode.PRESETS`) or
      `None` (the "digits-mlp" preset).
    - `**overrides`: fields of `TrainConfig` to change, e.g. `rule="bp"`.
    - `resume`: continue from `run_dir`'s checkpoint.
    - `progress`: show a progress bar; `log`: a function receiving one line per
      evaluation (e.g. `print`).
    - `callback`: called after every step with a dict (`step`, `epoch`, `batch`,
      `loss`, `skipped`); an exception it raises stops the run.
    - `stop_after_steps`: stop (after writing a checkpoint) once this many steps
      have been taken in total.
    - `sources`: `(train, test)` `holoode.data.Source`s to use instead of
      `config.dataset`.

    **Returns:** a `holoode.TrainResult`.
    """
    start = time.perf_counter()
    config = resolve(config, **overrides)
    _sharding.initialize(config)
    if jax.process_count() > 1:
        # Process 0's configuration is the run's (only it needs to see a config
        # file or run directory); each process keeps how it joined the run.
        shared = _sharding.on_first(
            lambda: {k: v for k, v in config.to_dict().items() if k not in LAUNCH}
        )
        config = resolve(config, **shared)
    with _sharding.stop_all_on_error():
        run = _setup(config, sources)
    dp, loader, eval_loader = run.dp, run.loader, run.eval_loader
    per_epoch, total, plan = run.per_epoch, run.total, run.plan
    step_fn, evaluate_fn = run.step_fn, run.evaluate_fn
    scales, rule = run.scales, run.rule
    pos, metrics, (model, opt_state, key) = _open_run(
        config, resume, (run.model, run.opt_state, run.key), dp
    )
    ckpt = None if config.run_dir is None else _checkpoint_path(config)
    model, opt_state, key, scales, rule = dp.replicate(
        (model, opt_state, key, scales, rule)
    )
    # Wall time of the training loop, continued across resumptions.
    seconds_before, t0 = pos.seconds, time.perf_counter()

    def elapsed():
        return seconds_before + time.perf_counter() - t0

    def save():
        if ckpt is not None and dp.is_first:
            pos.seconds = elapsed()
            m, o, k = dp.local((model, opt_state, key))
            _checkpoint.save(ckpt, model=m, opt_state=o, key=k,
                             position=pos.to_dict(), config=config)  # fmt: skip

    if not dp.is_first:  # one process reports
        progress, log = False, (lambda s: None)
    bar = Progress(total, pos.step, progress, f"{config.preset} {config.rule}")
    say = log if log is not None else (bar.write if progress else (lambda s: None))
    last = {"test_accuracy": math.nan, "test_top5": math.nan, "test_loss": math.nan}
    for record in metrics.records:
        last.update({k: record[k] for k in last if k in record})
    shown = None if math.isnan(last["test_accuracy"]) else last["test_accuracy"]
    finished = True

    compiled = False

    def run_epoch(epoch: int) -> bool:
        """The remaining steps of `epoch`; `False` if the run stops within it."""
        nonlocal model, opt_state, key, compiled
        for batch in loader.epoch(epoch, start=pos.batch):
            if pos.batch >= per_epoch:
                break
            if stop_after_steps is not None and pos.step >= stop_after_steps:
                return False
            x, y = dp.shard(batch.x, batch.y)
            if not dp.all_finite(batch.x, x):
                raise ValueError(
                    f"{config.dataset}: batch {pos.batch} of epoch {epoch} "
                    "contains NaN or inf; clean the data set."
                )
            if not compiled:
                say("compiling the training step (once per run; the first step "
                    "waits for it) ...")  # fmt: skip
                start = time.perf_counter()
            new = step_fn(rule, model, opt_state, scales, x, y, key)
            model, opt_state, key = new.model, new.opt_state, new.key
            loss, code = float(new.loss), int(new.code)
            if not compiled:
                compiled = True
                say(f"compiled and ran the first step in "
                    f"{time.perf_counter() - start:.1f} s")  # fmt: skip
            pos.tally(loss, code, int(new.halvings))
            running = pos.train_loss
            bar.update(loss if running is None else running, shown, pos.skipped)
            if callback is not None:
                callback({"step": pos.step, "epoch": epoch, "batch": pos.batch - 1,
                          "loss": loss, "skipped": code != 0})  # fmt: skip
            if pos.consecutive >= config.max_consecutive_skips:
                save()
                message = diagnose(config, plan, model, x, y, pos.skips)
                metrics.append({"step": pos.step, "epoch": epoch,
                                "stopped": message})  # fmt: skip
                raise TrainingStopped(message)
            if dp.preempted(pos.step):
                save()
                say(f"preempted at step {pos.step}: checkpoint written; continue "
                    "with --resume (resume=True)")  # fmt: skip
                return False
            if config.checkpoint_every and pos.step % config.checkpoint_every == 0:
                save()
        return True

    def end_epoch(done: int) -> None:
        nonlocal last, shown
        record = {"epoch": done, "step": pos.step,
                  "train_loss": pos.loss_sum / max(pos.loss_count, 1),
                  "skipped_steps": pos.skipped, "skip_reasons": dict(pos.skips),
                  "reduced_beta_steps": pos.reduced_beta,
                  "seconds": elapsed()}  # fmt: skip
        if done % config.eval_every == 0 or done == config.epochs:
            last = evaluate(evaluate_fn, model, eval_loader, dp)
            record.update(last)
            shown = last["test_accuracy"]
            say(
                f"epoch {done:3d}  train loss {record['train_loss']:.4f}  test "
                f"accuracy {100 * shown:.2f}%  top-5 {100 * last['test_top5']:.2f}%"
                f"  skipped {record['skipped_steps']}  ({record['seconds']:.0f} s)"
            )
            for reason, count in pos.skips.items():
                say(f"    skipped {count}×: {reason}")
            if record["reduced_beta_steps"]:
                say(
                    f"    {record['reduced_beta_steps']} steps in all retried with "
                    "|β| halved for some examples (their circle left the analytic "
                    "disc; beta_backoff)"
                )
        metrics.append(record)
        pos.next_epoch(done)
        if config.checkpoint_every == 0 and done < config.epochs:
            save()

    try:
        with _sharding.stop_all_on_error(agreed=(TrainingStopped,)):
            try:
                while pos.epoch < config.epochs:
                    finished = run_epoch(pos.epoch)
                    if not finished:
                        break
                    end_epoch(pos.epoch + 1)
                save()
                if finished and math.isnan(last["test_accuracy"]):
                    last = evaluate(evaluate_fn, model, eval_loader, dp)
            except KeyboardInterrupt:
                save()
                raise
    finally:
        bar.close()
    history = metrics.records
    epoch_losses = [r["train_loss"] for r in history if "train_loss" in r]
    return TrainResult(
        config=config,
        model=model,
        test_accuracy=last["test_accuracy"],
        test_top5=last["test_top5"],
        test_loss=last["test_loss"],
        train_loss=epoch_losses[-1] if epoch_losses else math.nan,
        steps=pos.step,
        skipped_steps=pos.skipped,
        skip_reasons=dict(pos.skips),
        seconds=time.perf_counter() - start,
        history=history,
        run_dir=None if config.run_dir is None else str(pathlib.Path(config.run_dir)),
        finished=finished,
    )


class _Setup(NamedTuple):
    """What a run is built from: data, the compiled step, the initial state."""

    dp: DataParallel
    loader: hdata.Loader
    eval_loader: hdata.Loader
    per_epoch: int
    total: int
    plan: Any
    step_fn: Callable
    evaluate_fn: Callable
    model: Any
    opt_state: Any
    key: Any
    scales: Any
    rule: Any


def _setup(config: TrainConfig, sources) -> _Setup:
    train_src, test_src = _sources(config) if sources is None else sources
    dp = DataParallel(config.num_devices)
    dp.check_batch_size("batch_size", config.batch_size)
    eval_bs = -(-min(config.eval_batch_size, len(test_src)) // dp.size) * dp.size
    shard = (dp.index, dp.count)
    loader = hdata.Loader(train_src, config.batch_size, seed=config.seed,
                          augment=config.augment, shard=shard)  # fmt: skip
    eval_loader = hdata.Loader(
        test_src, eval_bs, shuffle=False, drop_remainder=False, shard=shard
    )
    per_epoch = _build.steps_per_epoch(config, len(loader))
    total = config.epochs * per_epoch
    plan, step_fn, evaluate_fn = _step.plan(config, train_src.num_classes, total)
    model_key, key = jr.split(jr.key(config.seed))
    model = _build.make_model(
        config, train_src.image_shape, train_src.num_classes, model_key
    )
    opt_state = plan.optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    scales = _build.layer_scales(config, model)
    return _Setup(dp, loader, eval_loader, per_epoch, total, plan, step_fn,
                  evaluate_fn, model, opt_state, key, scales,
                  make_rule(config))  # fmt: skip


def _checkpoint_path(config: TrainConfig) -> pathlib.Path:
    return pathlib.Path(config.run_dir) / _checkpoint.FILENAME


def _open_run(config: TrainConfig, resume: bool, state, dp: DataParallel):
    """`(position, metrics log, (model, opt_state, key))`: process 0 checks the
    run directory, reads the checkpoint (`resume`) and writes the config; every
    process receives the position, the metrics so far and the state."""
    run_dir = None if config.run_dir is None else pathlib.Path(config.run_dir)
    ckpt = None if run_dir is None else _checkpoint_path(config)
    opened = {}

    def open_run():
        pos = Position()
        if resume:
            if ckpt is None:
                raise ValueError(
                    "train(resume=True) needs run_dir=... (the run to resume)."
                )
            model, opt_state, key = state
            opened["state"] = _checkpoint.load(
                ckpt, model=model, opt_state=opt_state, key=key, config=config
            )
            pos = Position.from_dict(opened["state"][3])
        elif ckpt is not None and ckpt.exists():
            raise ValueError(
                f"{str(run_dir)!r} already holds a checkpoint: pass --resume "
                "(resume=True) to continue that run, or choose another --run-dir."
            )
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            saved = {k: v for k, v in config.to_dict().items() if k not in LAUNCH}
            (run_dir / "config.json").write_text(json.dumps(saved, indent=2))
        opened["metrics"] = MetricsLog(
            run_dir,
            resume_step=pos.step if resume else None,
            resume_epoch=pos.epoch if resume else None,
        )
        return {"position": pos.to_dict(), "records": opened["metrics"].records}

    errors = (_checkpoint.CheckpointError, ValueError, OSError)
    with _sharding.stop_all_on_error(agreed=errors):
        reply = _sharding.on_first(open_run, errors)
    metrics = opened.get("metrics") or MetricsLog(None)
    metrics.records = reply["records"]
    if resume:
        state = dp.from_first(opened["state"][:3] if "state" in opened else state)
    return Position.from_dict(reply["position"]), metrics, state
