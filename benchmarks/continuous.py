"""`holoode.ContinuousHEP` on the yardstick against the paper's oscillating
schedule (benchmarks/README.md, "Continuous time on the yardstick")."""

import _harness as h
import _yardstick as ys
import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp

import holoode


PAPER = "paper osc. (N=10, T2=30, 3 periods)"
DEFAULTS = "ContinuousHEP() defaults"
# Euler with a fixed step below the stability limit of the fastest modes (the free
# Jacobian's eigenvalues reach about −2 here): one evaluation of the field per
# step, where Tsit5 spends six per (adaptive, stability-limited) step.
EULER = holoode.SteadyStateODE(
    dfx.Euler(), stepsize_controller=dfx.ConstantStepSize(), dt0=0.9, max_steps=100_000
)
TSIT5 = holoode.SteadyStateODE(max_steps=100_000)


def method(rule, solver=None):
    @eqx.filter_jit
    def gradient(model, x, y):
        grads, info = holoode.gradient(
            rule, model, x, y, cost=ys.COST, solver=solver, throw=False
        )
        return grads, info.error_estimate, info.result, jnp.max(info.num_steps)

    return gradient


def methods(quick: bool) -> dict:
    """`{label: (model, x, y) -> grads or (grads, estimate, result, steps)}`."""
    cont = holoode.ContinuousHEP
    out = {PAPER: ys.paper_oscillating(), DEFAULTS: method(cont())}
    if quick:
        return out | {"|β|=0.1 T=300 Euler": method(cont(0.1, 300.0), EULER)}
    out["|β|=0.1 T=300 Tsit5"] = method(cont(0.1, 300.0), TSIT5)
    for period in (300.0, 1000.0, 3000.0):
        out[f"|β|=0.1 T={period:g} Euler"] = method(cont(0.1, period), EULER)
    richardson = cont(0.1, 1000.0, richardson=True)
    out["|β|=0.1 T=1000 Euler Richardson"] = method(richardson, EULER)
    out["|β|=0.4 T=1000 Euler"] = method(cont(0.4, 1000.0), EULER)
    return out


def measure(args):
    rounds, quick = 2 if args.quick else 3, args.quick
    record = dict(settings=dict(quick=quick, rounds=rounds), results={})
    for state in args.states or (("init",) if quick else ys.STATES):
        model, x, y = ys.load(state)
        reference = ys.exact_gradient(model, x, y)
        calls = {k: lambda f=f: f(model, x, y) for k, f in methods(quick).items()}
        record["results"][state] = rows = h.interleaved(calls, rounds)
        for name, row in rows.items():
            out, paper, speed = row.pop("out"), name == PAPER, ys.BATCH / row["time_s"]
            grads, estimate, result, steps = (out, jnp.nan, None, 0) if paper else out
            row |= dict(error=h.rel_error(grads, reference), solver_steps=int(steps))
            row |= dict(error_estimate=float(estimate), samples_per_s=speed)
            row |= dict(result="n/a" if paper else h.result_name(result))
    return record | dict(targets=[dict(target=t, met=ok) for t, ok in targets(record)])


def targets(record) -> list[tuple[str, bool]]:
    out = []
    for state, rows in record["results"].items():
        add = lambda text, ok: out.append((f"[{state}] {text}", bool(ok)))
        paper, default = rows[PAPER]["samples_per_s"], rows[DEFAULTS]
        speed, error = default["samples_per_s"] / paper, default["error"]
        text = "defaults: error ≤ 1.2e-1 at ≥ 3× the paper's samples/s"
        add(f"{text} (error {error:.3g}, {speed:.2f}×)", error <= 0.12 and speed >= 3)
        good = [(k, r) for k, r in rows.items() if k != PAPER and r["error"] <= 1e-2]
        text, ratio = "some setting: error ≤ 1e-2 at ≥ 1× paper (none ≤ 1e-2)", 0
        if best := max(good, key=lambda r: r[1]["samples_per_s"], default=None):
            ratio = best[1]["samples_per_s"] / paper
            text = "some setting: error ≤ 1e-2 at ≥ 1× the paper's samples/s (best: "
            text += f"{best[0]}, {ratio:.2f}×)"
        add(text, ratio >= 1)
        compile_s = default["compile_s"]
        add(f"defaults compile ≤ 10 s ({compile_s:.1f} s)", compile_s <= 10)
        ok = lambda r: 10 * r["error_estimate"] >= r["error"]
        honest = [ok(r) for k, r in rows.items() if r["result"] == "successful"]
        add("every successful estimate: error_estimate ≥ error / 10", all(honest))
    return out


def report(record):
    rows, row = [], "{samples_per_s:.3g};{ratio:.2f};{compile_s:.1f};{error:.3g};"
    row += "{error_estimate:.3g};{result};{solver_steps}"
    for state, results in record["results"].items():
        paper = results[PAPER]["samples_per_s"]
        for name, r in results.items():
            ratio = r["samples_per_s"] / paper
            rows.append([state, name, *row.format(**r, ratio=ratio).split(";")])
    columns = "state,method,samples/s,× paper,compile (s),rel. error,error_estimate"
    text = [h.table([*columns.split(","), "result", "steps"], rows, "llrrrrrlr"), ""]
    text += [f"- {t}: {'met' if ok else 'not met'}" for t, ok in targets(record)]
    missing = record.get("unavailable", {}).items()  # states not measured
    text += [f"- [{s}] every target: not measured ({why})" for s, why in missing]
    fig, (axes,) = h.figure(1, 2, size=(12, 4.5))
    for state, results in record["results"].items():
        for i, (name, r) in enumerate(results.items()):
            kw = dict(marker={"init": "o", "trained": "s"}[state], color=f"C{i}")
            kw |= dict(label=f"{name} [{state}]")
            axes[0].scatter(r["samples_per_s"], r["error"], **kw)
            axes[1].scatter(r["error"], r["error_estimate"], **kw)
    axes[0].set(xlabel="samples/s (batch 20)", ylabel="relative gradient error")
    axes[0].set_title("speed and accuracy")
    axes[0].axhline(0.12, color="grey", lw=0.5, ls="--")
    axes[0].legend(fontsize=6)
    axes[1].plot([1e-3, 10], [1e-3, 10], color="grey", lw=0.5)
    axes[1].set(xlabel="true relative error", ylabel="info.error_estimate")
    axes[1].set_title("error estimate (o: init, s: trained)")
    for ax in axes:
        ax.set(xscale="log", yscale="log")
    return "\n".join(text), fig


def main(argv=None):
    p = h.parser(__doc__, quick=True, states=True)
    return h.run("continuous", p, measure, report, argv)


if __name__ == "__main__":
    main()
