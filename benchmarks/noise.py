"""Training and gradients under neuron noise σ = 0 and 0.04 on the embedded
digits (benchmarks/README.md, "Neuron noise")."""

import _harness as h
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optax

import holoode


NOISE, BP = (0.0, 0.04), "BP (implicit diff.)"
PAPER_RULES = ["ep0.1", "ep0.4", "hep", "cont"]  # the rules of the paper's Table 1
PRESETS = {  # training (hidden … num_periods), then gradient quality
    "quick": dict(hidden=8, seeds=[0], epochs=1, batch_size=256, learning_rate=0.1)
    | dict(period=20.0, num_periods=1, grad_batch=4, grad_keys=2, pretrain_steps=0)
    | dict(rules=["ep0.1"], bp=False),
    "default": dict(hidden=32, seeds=[0, 1, 2], epochs=8, batch_size=32)
    | dict(learning_rate=0.02, period=30.0, num_periods=1, grad_batch=16)
    | dict(grad_keys=4, pretrain_steps=40, rules=PAPER_RULES, bp=True),
    "full": dict(hidden=128, seeds=[0, 1, 2], epochs=30, batch_size=32)
    | dict(learning_rate=0.05, period=50.0, num_periods=3, grad_batch=64)
    | dict(grad_keys=8, pretrain_steps=100, rules=PAPER_RULES, bp=True),
}


def make_rule(kw, noise_std):  # as `holoode train` builds it from these settings
    noise, b = holoode.NeuronNoise(noise_std) if noise_std > 0 else None, kw["beta"]
    if kw["rule"] == "continuous":
        return holoode.ContinuousHEP(b, kw["period"], kw["num_periods"], noise=noise)
    if kw["rule"] == "hep":
        return holoode.HolomorphicEP(b, kw["num_points"], noise=noise)
    return holoode.ClassicEP(b, noise=noise)


def rules(s) -> dict:
    """`{key: (label, TrainConfig arguments)}`."""
    t, k = s["period"], s["num_periods"]
    cont = dict(rule="continuous", beta=0.4, period=t, num_periods=k)
    return {
        "ep0.1": ("EP β=0.1", dict(rule="ep", beta=0.1)),
        "ep0.4": ("EP β=0.4", dict(rule="ep", beta=0.4)),
        "hep": ("hEP N=10 |β|=0.4", dict(rule="hep", beta=0.4, num_points=10)),
        "cont": (f"cont. hEP |β|=0.4 T={t:g} K={k}", cont),
    }


def training(s) -> list[dict]:
    """`holoode.train` (SGD with momentum 0.9, float32) per rule, σ and seed."""
    specs = [rules(s)[k] for k in s["rules"]] + [(BP, dict(rule="bp"))] * s["bp"]
    common = {k: s[k] for k in ("epochs", "batch_size", "learning_rate")}
    runs, common = [], common | dict(hidden=(s["hidden"],) * 2)
    for label, kwargs in specs:
        for noise_std in NOISE[: 1 if kwargs["rule"] == "bp" else 2]:
            for seed in s["seeds"]:
                config = dict(kwargs, noise_std=noise_std, **common, seed=seed)
                config = holoode.TrainConfig(**config)
                result, t = h.timed(lambda: holoode.train(config, log=lambda _: 0))
                run = dict(label=label, noise_std=noise_std, seed=seed, wall_s=t)
                keys = ("test_accuracy", "train_loss", "skipped_steps", "skip_reasons")
                runs.append(run | {k: result[k] for k in keys})
                print(f"  {runs[-1]}", flush=True)
    return runs


def gradients(s) -> dict:
    """Each rule's gradient against the exact one (float64, one batch, over noise
    keys) on a partly trained network (exact-gradient SGD from the initial one)."""
    # The dynamics: Newton from the zero state can leave the free equilibrium's basin.
    tight = holoode.FixedPointIteration(
        step_size=0.5, rtol=1e-12, atol=1e-12, max_steps=50_000
    )
    data, cost = holoode.data.load("digits", "train"), holoode.CrossEntropy()
    x_train, y_train = data.get(jnp.arange(len(data)))
    x_train = x_train.reshape(len(x_train), -1)
    x = jnp.asarray(x_train[: s["grad_batch"]], jnp.float64)
    y = jnp.asarray(y_train[: s["grad_batch"]])
    sizes = (64, s["hidden"], s["hidden"], 10)
    model = holoode.nn.HopfieldMLP(sizes, key=jr.key(1234), dtype=jnp.float64)
    optim = optax.sgd(0.05, momentum=0.9)

    @eqx.filter_jit
    def bp_step(model, opt_state, xb, yb):
        grads, info = holoode.gradient(
            holoode.ImplicitDifferentiation(), model, xb, yb, cost=cost,
            solver=tight, throw=False,
        )  # fmt: skip
        updates, opt_state = optim.update(grads, opt_state)
        new = eqx.apply_updates(model, updates)
        return new, opt_state, info.loss, info.result._value

    @eqx.filter_jit
    def estimate(rule, model, key, solver):
        return holoode.gradient(
            rule, model, x, y, cost=cost, solver=solver, key=key, throw=False
        )

    opt_state = optim.init(eqx.filter(model, eqx.is_inexact_array))
    rng, losses, skipped = np.random.default_rng(0), [], 0
    for _ in range(s["pretrain_steps"]):  # batches of 64, lr 0.05, momentum 0.9
        idx = rng.choice(len(x_train), 64, replace=False)
        xb, yb = jnp.asarray(x_train[idx], jnp.float64), jnp.asarray(y_train[idx])
        new, new_state, loss, code = bp_step(model, opt_state, xb, yb)
        model, opt_state = (new, new_state) if int(code) == 0 else (model, opt_state)
        skipped, losses = skipped + (int(code) != 0), losses + [float(loss)]
    exact = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    reference, info = holoode.gradient(exact, model, x, y, cost=cost, solver=tight)
    rows = []
    for noise_std in NOISE:
        for label, kw in (rules(s)[k] for k in s["rules"]):
            rule = make_rule(kw, noise_std)
            solver = holoode.SteadyStateODE() if kw["rule"] == "continuous" else tight
            row = dict(rule=label, noise_std=noise_std, cosine=[], rel_error=[])
            row |= dict(result_codes=[], free_loss=float(info.loss))
            for k in range(s["grad_keys"]) if noise_std > 0 else [None]:
                key = None if k is None else jr.key(100 + k)
                g, i = estimate(rule, model, key, solver)
                row["cosine"].append(h.cosine(g, reference))
                row["rel_error"].append(h.rel_error(g, reference))
                row["result_codes"].append(int(i.result._value))
            rows.append(row)
            print(f"  {row}", flush=True)
    pretrain = dict(pretrain_losses=losses, pretrain_skipped=skipped)
    return dict(gradients=rows, network_sizes=sizes, batch=s["grad_batch"]) | pretrain


def measure(args):
    preset = "quick" if args.quick else "full" if args.full else "default"
    s = PRESETS[preset] | dict(preset=preset)
    runs = training(s)
    with jax.enable_x64(True):
        return dict(settings=s, training=dict(runs=runs), gradients=gradients(s))


def stats(values, digits=None):
    """Mean and sample standard deviation, as a pair or (with `digits`) as text."""
    mean, std = np.mean(values), np.std(values, ddof=1) if len(values) > 1 else 0.0
    return (mean, std) if digits is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def report(record):
    s, runs, grads = record["settings"], record["training"]["runs"], []
    labels = [label for label, _ in rules(s).values()] + [BP]
    labels = [k for k in labels if any(r["label"] == k for r in runs)]
    acc, rows = {}, []
    for k in labels:
        cells, skipped = [k], []
        for std in NOISE:
            mine = [r for r in runs if r["label"] == k and r["noise_std"] == std]
            acc[k, std] = [100 * r["test_accuracy"] for r in mine] or [np.nan]
            cells.append(f"{stats(acc[k, std], 1)} (n={len(mine)})" if mine else "—")
            skipped.append(str(sum(r["skipped_steps"] for r in mine)) if mine else "—")
        rows.append(cells + [" / ".join(skipped)])
    for r in (grad_rows := record["gradients"]["gradients"]):
        codes = ",".join(map(str, sorted(set(r["result_codes"]))))
        cos, err = f"{stats(r['cosine'], 4)} (n={len(r['cosine'])})", r["rel_error"]
        grads.append([r["rule"], f"{r['noise_std']:g}", cos, stats(err, 3), codes])
    columns = ["rule", "σ = 0: test acc. (%)", "σ = 0.04: test acc. (%)"]
    text = f"Training: HopfieldMLP(64, {s['hidden']}, {s['hidden']}, 10), final test "
    text += f"accuracy over {len(s['seeds'])} seed(s)\n\n"
    text += h.table(columns + ["skipped steps σ=0 / σ=0.04"], rows, "l" * 4)
    text += "\n\nGradient against the exact one (float64, partly trained network)\n\n"
    columns = ["rule", "σ", "cosine to exact (mean ± std)"]
    columns += ["rel. L2 error (mean ± std)", "result codes"]
    text += h.table(columns, grads, "l" * 5)
    fig, (axes,) = h.figure(1, 2, size=(14, 4.8))
    for j, std in enumerate(NOISE):
        kw = dict(width=0.38, capsize=3, label=f"σ = {std:g}")
        cos = [r["cosine"] for r in grad_rows if r["noise_std"] == std]
        for ax, bars in zip(axes, ([acc[k, std] for k in labels], cos)):
            bars = np.array([stats(b) for b in bars]).reshape(-1, 2)
            at = np.arange(len(bars)) + (j - 0.5) * 0.38
            ax.bar(at, bars[:, 0], yerr=bars[:, 1], **kw)
    for ax, ticks in zip(axes, (labels, list(dict.fromkeys(g[0] for g in grads)))):
        ax.set_xticks(range(len(ticks)), ticks, rotation=20, ha="right", fontsize=8)
        ax.legend()
    title = f"digits, h={s['hidden']}, {s['epochs']} epoch(s), "
    title += f"{len(s['seeds'])} seed(s)"
    axes[0].set(ylabel="test accuracy (%)", ylim=(0, 100), title=title)
    axes[1].set(ylabel="cosine similarity to exact gradient", ylim=(0, 1.02))
    axes[1].set_title("gradient quality, float64, partly trained network")
    return text, fig


def main(argv=None):
    p = h.parser(__doc__, quick=True, full=True)
    return h.run("noise", p, measure, report, argv)


if __name__ == "__main__":
    main()
