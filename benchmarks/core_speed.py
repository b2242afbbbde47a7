"""Core speed and exactness of holomorphic EP on the yardstick, against the
paper's schedule (benchmarks/README.md, "Core speed and exactness")."""

import _harness as h
import _yardstick as ys
import jax.numpy as jnp
import numpy as np

import holoode


def methods(model, x, y, quick: bool) -> dict:
    """`{label: () -> (grads, info or None)}`: the paper's schedule, then holoode
    (no solver: the default)."""
    paper = lambda fn: lambda: (fn(model, x, y), None)
    gradient = lambda rule, solver: holoode.gradient(
        rule, model, x, y, cost=ys.COST, solver=solver, throw=False
    )
    lib = lambda rule, solver=None: lambda: gradient(rule, solver)
    hep, out = holoode.HolomorphicEP, {}
    out["paper hEP |β|=0.4 N=10"] = paper(ys.paper_hep(0.4, 10))
    if not quick:
        out["paper hEP |β|=0.4 N=2"] = paper(ys.paper_hep(0.4, 2))
        out["paper EP β=0.1"] = paper(ys.paper_ep(0.1))
        out["paper EP β=0.4"] = paper(ys.paper_ep(0.4))
    out["hEP default (no arguments)"] = lib(hep())
    out["hEP default rule, SteadyStateODE"] = lib(hep(), holoode.SteadyStateODE())
    out["hEP |β|=0.4 N=10, Anderson tol 1e-4"] = lib(hep(0.4, 10), ys.anderson(1e-4))
    out["hEP |β|=0.1 N=2, Anderson tol 1e-4"] = lib(hep(0.1, 2), ys.anderson(1e-4))
    out["hEP |β|=0.1 N=6, Anderson tol 1e-5"] = lib(hep(0.1, 6), ys.anderson(1e-5))
    if not quick:
        implicit = lib(holoode.ImplicitDifferentiation(), ys.anderson(1e-5))
        out["implicit differentiation, Anderson tol 1e-5"] = implicit
    return out


def errors(grads, info, reference) -> dict:
    """The true error and, for holoode's rules, their own diagnostics."""
    out = dict(rel_error=h.rel_error(grads, reference))
    if info is not None:
        out |= dict(error_estimate=float(info.error_estimate))
        out |= dict(max_radius_ratio=float(jnp.max(info.radius_ratio)))
        out |= dict(result=h.result_name(info.result))
    return out


def measure(args):
    """Per state: the rows (3 interleaved rounds), and a sweep over N and |β|
    (honest: the estimate is at least a third of the true error, or refused)."""
    solver = ys.anderson(1e-5)
    ns, betas = ((4, 10), (0.1, 0.4)) if args.quick else ((4, 10, 16), (0.1, 0.4, 1.0))
    record = dict(settings=dict(quick=args.quick, batch=ys.BATCH, sizes=ys.SIZES))
    record["states"] = {}
    for state in args.states or (("init",) if args.quick else ys.STATES):
        model, x, y = ys.load(state)
        reference, speed, sweep = ys.exact_gradient(model, x, y), [], []
        for label, t in h.interleaved(methods(model, x, y, args.quick), 3).items():
            (grads, info), median = t["out"], t["time_s"]
            speed.append(dict(method=label, compile_s=t["compile_s"], time_s=median))
            speed[-1] |= dict(samples_per_s=len(x) / median)
            speed[-1] |= errors(grads, info, reference)
            if info is not None:
                free, nudged = np.asarray(info.num_steps)[:, 0], info.num_steps[:, 1:]
                speed[-1] |= dict(free_steps_max=int(free.max()))
                speed[-1] |= dict(free_steps_median=float(np.median(free)))
                speed[-1] |= dict(nudged_steps_max=int(nudged.max(initial=0)))
        for n, beta in [(n, b) for n in ns for b in betas]:
            rule = holoode.HolomorphicEP(jnp.asarray(beta, jnp.float32), n)
            grads, info = holoode.gradient(
                rule, model, x, y, cost=ys.COST, solver=solver, throw=False
            )
            row = dict(num_points=n, beta=beta) | errors(grads, info, reference)
            ok = row["error_estimate"] >= row["rel_error"] / 3
            sweep.append(row | dict(honest=ok or row["result"] != "successful"))
        record["states"][state] = dict(speed=speed, exactness=sweep)
    return record | dict(targets=targets(record))


def targets(record) -> list[tuple[str, bool, str]]:
    """The targets of this benchmark, each with met / not met and the evidence."""
    out, first = [], next(iter(record["states"]))
    for state, data in record["states"].items():
        add = lambda *t: out.append((f"[{state}] {t[0]}", *t[1:]))
        rows = {r["method"]: r for r in data["speed"]}
        paper, d = rows["paper hEP |β|=0.4 N=10"], rows["hEP default (no arguments)"]
        ok = d["rel_error"] <= 1e-2 and d["result"] == "successful"
        text = f"error {d['rel_error']:.2e}, result {d['result']}"
        add("default hEP within 1e-2 of the exact gradient", ok, text)
        ratio = d["samples_per_s"] / paper["samples_per_s"]
        add("default hEP ≥ 3× the paper's samples/s", ratio >= 3, f"{ratio:.2f}×")
        matched = [
            r
            for r in data["speed"]
            if r["method"].startswith("hEP")
            and r["rel_error"] <= paper["rel_error"]
            and r.get("result") == "successful"
        ]
        text = "no row at the paper's error"
        if best := max(matched, key=lambda r: r["samples_per_s"], default=None):
            ratio = best["samples_per_s"] / paper["samples_per_s"]
            text = f"{best['method']}: {ratio:.2f}× at error {best['rel_error']:.2e}"
            text += f" (paper {paper['rel_error']:.2e})"
        text = ("hEP at the paper's error ≥ 10× the paper's samples/s", text)
        add(text[0], bool(best) and ratio >= 10, text[1])
        if state == first:  # later states reuse the programs compiled for the first
            t = d["compile_s"]
            add("compile of the default gradient ≤ 10 s", t <= 10, f"{t:.1f} s")
        text = "; ".join(
            f"N={r['num_points']} |β|={r['beta']}: est {r['error_estimate']:.1e} vs "
            f"{r['rel_error']:.1e}"
            for r in data["exactness"]
            if not r["honest"]
        )
        ok, text = not text, text or "all honest"
        add("error_estimate ≥ true error / 3 or refused (sweep)", ok, text)
    return out


def table(record) -> str:
    lines, first = [], next(iter(record["states"]))
    columns = "method,samples/s,vs paper N=10,compile [s],rel. error,error estimate,"
    columns += "result,free steps max (median),nudged max"
    sweep = "{num_points};{beta};{rel_error:.2e};{error_estimate:.2e};"
    sweep += "{max_radius_ratio:.2f};{result}"
    for state, data in record["states"].items():
        paper, rows = data["speed"][0]["samples_per_s"], []  # paper hEP |β|=0.4 N=10
        for r in data["speed"]:
            est = r.get("error_estimate")
            steps = f"{350 if 'paper EP' in r['method'] else 200} (fixed)"
            if "free_steps_max" in r:
                steps = f"{r['free_steps_max']} ({r['free_steps_median']:.0f})"
            rows.append(
                [r["method"], f"{r['samples_per_s']:.1f}"]
                + [f"{r['samples_per_s'] / paper:.2f}×"]
                + [f"{r['compile_s']:.1f}" if state == first else "(reused)"]
                + [f"{r['rel_error']:.2e}", "-" if est is None else f"{est:.2e}"]
                + [r.get("result", "-"), steps, r.get("nudged_steps_max", "fixed")]
            )
        rows2 = [
            sweep.format(**r).split(";") + ["yes" if r["honest"] else "**no**"]
            for r in data["exactness"]
        ]
        columns2 = "N,|β|,rel. error,error estimate,max radius ratio,result,honest"
        lines += [f"### {state}", "", h.table(columns.split(","), rows, "lrrrrrlrr")]
        lines += ["", h.table(columns2.split(","), rows2, "rrrrrll"), ""]
    met = [[t, "met" if ok else "**not met**", e] for t, ok, e in targets(record)]
    return "\n".join(lines + [h.table(["target", "met", "evidence"], met, "lll")])


def plot(record):
    states = list(record["states"])
    fig, (axes,) = h.figure(1, len(states), size=(6 * len(states), 4.5))
    for ax, state in zip(axes, states):
        for r in record["states"][state]["speed"]:
            at, paper = (r["samples_per_s"], r["rel_error"]), "paper" in r["method"]
            ax.scatter(*at, marker="os"[paper], color=["C0", "grey"][paper])
            ax.annotate(r["method"], at, fontsize=7)
        ax.set(xscale="log", yscale="log", title=f"yardstick, {state}")
        ax.set(xlabel="samples/s (batch 20, float32, CPU)", ylabel="relative error")
        ax.axhline(1e-2, color="k", lw=0.5, ls="--")
    return fig


def main(argv=None):
    p = h.parser(__doc__, quick=True, states=True)
    return h.run("core_speed", p, measure, lambda r: (table(r), plot(r)), argv)


if __name__ == "__main__":
    main()
