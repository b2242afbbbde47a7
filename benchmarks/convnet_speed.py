"""Convnet training steps: hEP N = 2, implicit differentiation and the paper's
schedule (benchmarks/README.md, "Convnet training-step throughput")."""

import _harness as h
import _yardstick as ys
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import holoode


def measure(args):
    channels, batch = ((128, 256, 512, 512), 32) if args.full else ((16, 32, 64, 64), 8)
    repeats, beta = args.repeats or (5 if args.full else 3), 1.0
    free_steps, nudged_steps = 250, 60  # the paper's ImageNet 32×32 schedule
    key_model, key_x, key_y = jr.split(jr.key(0), 3)
    shape, padding = (3, 32, 32), (1, 1, 1, 0)
    model = holoode.nn.HopfieldConvNet(
        shape, channels, 10, padding=padding, key=key_model
    )
    x = jr.normal(key_x, (batch, *shape), jnp.float32)
    y = jr.randint(key_y, (batch,), 0, 10)
    cost, optim = holoode.CrossEntropy(), optax.sgd(0.01, momentum=0.9)
    opt_state = optim.init(eqx.filter(model, eqx.is_inexact_array))

    def library(rule, tol):
        kw = dict(step_size=0.5, rtol=tol, atol=tol, max_steps=20000)
        solver = holoode.FixedPointIteration(**kw)
        return lambda m, x, y: holoode.gradient(
            rule, m, x, y, cost=cost, solver=solver, throw=False
        )[0]

    def step(gradient_fn):  # one jitted training step: gradient + SGD update
        @eqx.filter_jit
        def step(model, opt_state, x, y):
            grads = gradient_fn(model, x, y)
            updates, opt_state = optim.update(grads, opt_state)
            return eqx.apply_updates(model, updates), opt_state, grads

        return lambda: step(model, opt_state, x, y)

    hep, implicit = holoode.HolomorphicEP(beta, 2), holoode.ImplicitDifferentiation()
    methods = {
        "hEP N=2, tol 1e-5": step(library(hep, 1e-5)),
        "hEP N=2, tol 1e-6": step(library(hep, 1e-6)),
        "implicit diff., tol 1e-6": step(library(implicit, 1e-6)),
        "paper schedule N=2": step(ys.paper_hep(beta, 2, free_steps, nudged_steps)),
    }
    with jax.enable_x64(True):
        m64, x64 = h.cast(model, jnp.float64), x.astype(jnp.float64)
        reference = h.flat(library(implicit, 1e-10)(m64, x64, y))
    rows = []
    for name, t in h.interleaved(methods, repeats).items():
        row = dict(method=name, compile_s=t["compile_s"], step_s=t["time_s"])
        row |= dict(step_s_all=t["times_s"], images_per_s=batch / t["time_s"])
        rows.append(row | dict(rel_error=h.rel_error(t["out"][2], reference)))
    for row in rows:
        row["speedup_vs_paper"] = rows[-1]["step_s"] / row["step_s"]
    settings = dict(channels=channels, batch=batch, beta=beta, repeats=repeats)
    settings |= dict(free_steps=free_steps, nudged_steps=nudged_steps, full=args.full)
    settings |= dict(reference="implicit differentiation, float64, tol 1e-10")
    return dict(settings=settings, rows=rows)


def report(record):
    s, rows = record["settings"], record["rows"]
    row = "{method};{compile_s:.1f};{step_s:.3f};{images_per_s:.1f};"
    cells = [
        (row + "{speedup_vs_paper:.2f}×;{rel_error:.1e}").format(**r) for r in rows
    ]
    columns = "method,compile (s),step (s),images/s,speed-up vs paper"
    columns = [*columns.split(","), "gradient rel. error"]
    text = h.table(columns, [c.split(";") for c in cells], "l" * 6)
    text += f"\n\nChannels {s['channels']}, batch {s['batch']}, float32, |β| = "
    text += f"{s['beta']}; paper schedule {s['free_steps']} free + "
    text += f"{s['nudged_steps']} nudged steps per point; gradient error against "
    text += f"{s['reference']}."
    fig, (axes,) = h.figure(1, 2, size=(9, 3.4))
    names = [r["method"] for r in rows]
    axes[0].barh(names, [r["images_per_s"] for r in rows], color="C0")
    axes[0].set_xlabel("images / s (training step)")
    axes[1].barh(names, [r["rel_error"] for r in rows], color="C1")
    axes[1].set(xscale="log", xlabel="gradient rel. error vs exact (float64)")
    axes[1].set_yticks([])
    fig.suptitle(f"HopfieldConvNet {s['channels']}, batch {s['batch']}, CPU")
    return text, fig


def main(argv=None):
    p = h.parser(__doc__, full=True)
    p.add_argument("--repeats", type=int, default=None)
    return h.run("convnet_speed", p, measure, report, argv)


if __name__ == "__main__":
    main()
