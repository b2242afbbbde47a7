"""The `holoode` command."""

import argparse
import sys


def _demo(args) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jax.random as jr

    import holoode as ho

    from ._train import load_digits

    x, _, y, _ = load_digits()
    x, y = jnp.asarray(x[:16], jnp.float64), jnp.asarray(y[:16])
    model = ho.nn.HopfieldMLP((64, 32, 10), key=jr.key(0), dtype=jnp.float64)
    cost = ho.CrossEntropy()
    exact, _ = ho.gradient(ho.ImplicitDifferentiation(), model, x, y, cost=cost)
    flat = lambda g: jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(g)])  # noqa: E731
    print(f"{'rule':44s} {'rel. error vs backprop':>22s} {'error estimate':>15s}")
    for rule in [
        ho.ClassicEP(args.beta),
        ho.ClassicEP(args.beta, symmetric=True),
        ho.HolomorphicEP(args.beta, 4),
        ho.HolomorphicEP(args.beta, 8),
        ho.HolomorphicEP(args.beta, 16),
    ]:
        grads, info = ho.gradient(rule, model, x, y, cost=cost)
        err = jnp.linalg.norm(flat(grads) - flat(exact)) / jnp.linalg.norm(flat(exact))
        print(f"{str(rule):44s} {float(err):22.2e} {float(info.error_estimate):15.2e}")


def _train(args) -> None:
    from ._train import train, TrainConfig

    config = TrainConfig(
        rule=args.rule,
        beta=args.beta,
        num_points=args.num_points,
        period=args.period,
        noise_std=args.noise_std,
        hidden=tuple(int(h) for h in args.hidden.split(",")),
        epochs=args.epochs,
        seed=args.seed,
    )
    print(f"training a Hopfield MLP on scikit-learn digits: {config}")
    result = train(config)
    if args.compare == "bp":
        print("backprop reference (implicit differentiation), same model and schedule:")
        config.rule, config.noise_std = "bp", 0.0
        reference = train(config)
        print(
            f"test accuracy: {config.rule} {100 * reference['test_accuracy']:.2f}% vs "
            f"{args.rule} {100 * result['test_accuracy']:.2f}%"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="holoode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on the embedded digits data set")
    t.add_argument(
        "--rule",
        default="hep",
        choices=["hep", "ep", "ep-sym", "continuous", "bp", "bptt"],
    )
    t.add_argument("--beta", type=float, default=0.5)
    t.add_argument("--num-points", type=int, default=4)
    t.add_argument("--period", type=float, default=50.0, help="for --rule continuous")
    t.add_argument("--noise-std", type=float, default=0.0, help="neuron noise σ")
    t.add_argument(
        "--hidden", default="128", help="hidden widths, comma-separated (e.g. 256,256)"
    )
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--compare", choices=["bp"], default=None)
    t.set_defaults(func=_train)
    d = sub.add_parser("demo", help="hEP and classic EP vs the exact gradient")
    d.add_argument("--beta", type=float, default=0.5)
    d.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
