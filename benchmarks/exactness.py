"""Gradient error of holomorphic and classic EP against N and |β|, and the error
estimate against the true error (benchmarks/README.md, "Exactness")."""

import _harness as h
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

import holoode


def measure(args):
    if args.full:
        model, x, y, cost, exact = h.digits_problem(args, (64, 128, 128, 10), 128)
        num_points = [2, 3, 4, 5, 6, 8, 10, 12, 16, 20]
        betas = [0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0]
        ep_betas = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0]
    else:
        model, x, y, cost, exact = h.digits_problem(args, (64, 32, 32, 10), 16)
        num_points, betas = [2, 3, 4, 8, 16], [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0]
        ep_betas = [1e-4, 1e-3, 0.01, 0.1, 1.0]
    num_points, betas = args.num_points or num_points, args.betas or betas
    ep_betas = ep_betas if args.ep_betas is None else args.ep_betas  # "": none
    solver = holoode.RootFind(rtol=1e-12, atol=1e-12)
    radius = float(holoode.safe_beta(model, x, y, cost=cost, solver=solver))
    print(f"exactness: HopfieldMLP{args.sizes}; safe |β| = {radius:.3g}", flush=True)

    def run(rule, **row):
        grads, info = holoode.gradient(
            rule, model, x, y, cost=cost, solver=solver, throw=False
        )
        estimate, ratio = float(info.error_estimate), float(jnp.max(info.radius_ratio))
        row |= dict(rel_error=h.rel_error(grads, exact), error_estimate=estimate)
        row |= dict(max_radius_ratio=ratio, result=h.result_name(info.result))
        print(f"  {row}", flush=True)
        return row

    grid = [(n, b) for n in num_points for b in betas]
    hep = [run(holoode.HolomorphicEP(b, n), num_points=n, beta=b) for n, b in grid]
    grid = [(sym, b) for sym in (False, True) for b in ep_betas]
    classic = [
        run(holoode.ClassicEP(b, symmetric=s), symmetric=s, beta=b) for s, b in grid
    ]
    settings = dict(sizes=args.sizes, batch=args.batch, dtype="float64", full=args.full)
    settings |= dict(num_points=num_points, betas=betas, ep_betas=ep_betas)
    record = dict(settings=settings, safe_beta=radius, hep=hep, classic=classic)
    return record | dict(fits=fits(hep, classic, radius))


def fits(hep, classic, radius):
    """Fitted orders in β from the errors above 1e-11 (hEP: at |β| ≤ R/2; classic
    EP: below 0.1)."""
    order = lambda p: float(np.polyfit(*np.log(p).T, 1)[0]) if len(p) > 1 else None
    out = {}
    for n in sorted({r["num_points"] for r in hep}):
        pts = [(r["beta"], r["rel_error"]) for r in hep if r["num_points"] == n]
        pts = [(b, e) for b, e in pts if e > 1e-11 and b <= radius / 2]
        out[f"hEP N={n}"] = dict(order=order(pts), theory=n, points=len(pts))
    for sym, theory in ((False, 1), (True, 2)):
        ok = lambda r: r["symmetric"] == sym and 1e-11 < r["rel_error"] < 0.1
        pts = [(r["beta"], r["rel_error"]) for r in classic if ok(r)]
        name = "EP symmetric" if sym else "EP one-sided"
        out[name] = dict(order=order(pts), theory=theory, points=len(pts))
    return out


def markdown(record) -> str:
    s, hep, classic = record["settings"], record["hep"], record["classic"]
    mark = {True: "", False: " †"}
    cell = lambda r: f"{r['rel_error']:.1e}" + mark[r["result"] == "successful"]
    grid = {n: [n] for n in s["num_points"]}
    for r in hep:
        grid[r["num_points"]].append(cell(r))
    ep = [
        [name, *(f"{r['rel_error']:.1e}" for r in classic if r["symmetric"] == sym)]
        for sym, name in ((False, "one-sided"), (True, "symmetric"))
    ]
    orders = [
        [k, "" if f["order"] is None else f"{f['order']:.2f}", f["theory"], f["points"]]
        for k, f in record["fits"].items()
    ]
    text = [
        f"HopfieldMLP{tuple(s['sizes'])}, batch {s['batch']}, float64, Newton to "
        f"1e-12; estimated safe |β| = {record['safe_beta']:.3g}. Relative error of "
        "holomorphic EP (rows: N; columns: |β|; † = result code not `successful`, "
        "see the JSON):\n",
        h.table(["N", *(f"{b:g}" for b in s["betas"])], grid.values()),
        "\nClassic EP (columns: β):\n",
        h.table(["variant", *(f"{b:g}" for b in s["ep_betas"])], ep),
        "\nFitted order of the error in β (theory: hEP N, EP one-sided 1, "
        "symmetric 2):\n",
        h.table(["estimator", "fitted order", "theory", "points"], orders),
        "\n`info.error_estimate` / true error, over the |β| of the grid where both "
        "are above 1e-13 (min – max):\n",
    ]
    pair = lambda r: (r["error_estimate"], r["rel_error"])
    ok = lambda e, t: np.isfinite([e, t]).all() and min(e, t) > 1e-13
    for n in s["num_points"]:
        pairs = [pair(r) for r in hep if r["num_points"] == n]
        ratios = [e / t for e, t in pairs if ok(e, t)]
        text += [f"- N={n}: {min(ratios):.2g} – {max(ratios):.2g}"] if ratios else []
    return "\n".join(text)


def plot(record):
    s, hep, radius = record["settings"], record["hep"], record["safe_beta"]
    xy = lambda rows, x, y: [np.maximum([r[k] for r in rows], 1e-16) for k in (x, y)]
    fig, ((ax_n, ax_b, ax_e),) = h.figure(1, 3, size=(16, 4.8))
    for b in s["betas"]:
        label = f"|β| = {b:g}" + (" (> R)" if b > radius else "")
        rows = [r for r in hep if r["beta"] == b]
        ax_n.semilogy(*xy(rows, "num_points", "rel_error"), "o-", label=label)
    for i, n in enumerate(s["num_points"]):
        rows = [r for r in hep if r["num_points"] == n]
        ax_b.loglog(*xy(rows, "beta", "rel_error"), "o-", c=f"C{i}", label=f"hEP N={n}")
        rows = [r for r in rows if np.isfinite(r["error_estimate"])]
        if rows:
            estimates = xy(rows, "rel_error", "error_estimate")
            ax_e.loglog(*estimates, "o", color=f"C{i}", label=f"N={n}")
    for sym, style in ((False, "k--"), (True, "k:")):
        rows = [r for r in record["classic"] if r["symmetric"] == sym]
        label = "EP " + ("symmetric" if sym else "one-sided")
        ax_b.loglog(*xy(rows, "beta", "rel_error"), style, marker="s", label=label)
    lost = [r for r in hep if r["result"] != "successful"]
    lost = [r | dict(rel_error=np.nan_to_num(r["rel_error"], nan=1.0)) for r in lost]
    label = "result not successful (non-finite at 1)"
    ax_b.loglog(*xy(lost, "beta", "rel_error"), "x", c="red", ms=9, label=label)
    ax_b.axvline(radius, color="gray", lw=1, ls="--")
    est = [r for r in hep if np.isfinite(r["error_estimate"])]
    if est := [v for r in est for v in (r["rel_error"], r["error_estimate"])]:
        lo, hi = max(min(est), 1e-16), max(est)
        ax_e.loglog([lo, hi], [lo, hi], color="gray", lw=1, label="estimate = true")
    ax_n.set(xlabel="number of points N", ylabel="relative error vs exact gradient")
    ax_n.set_title("holomorphic EP: error vs N")
    ax_b.set(xlabel="|β| (classic EP: β)")
    ax_b.set_title("error vs |β| (dashed: estimated safe |β|)")
    ax_e.set(xlabel="true relative error", ylabel="info.error_estimate")
    ax_e.set_title("a-posteriori estimate vs true error (N ≥ 3)")
    for ax in (ax_n, ax_b, ax_e):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if ax is ax_b else 1)
    title = f"Exactness: HopfieldMLP{tuple(s['sizes'])}, batch {s['batch']}, float64"
    fig.suptitle(title + ", equilibria by Newton to 1e-12")
    return fig


def main(argv=None):
    numbers = lambda kind: lambda text: [kind(v) for v in text.split(",") if v]
    p = h.parser(__doc__, full=True, sizes=True)
    p.add_argument("--num-points", type=numbers(int), help="e.g. 2,4,8")
    p.add_argument("--betas", type=numbers(float), help="hEP radii, e.g. 0.1,0.5")
    p.add_argument("--ep-betas", type=numbers(float), help="classic EP β values")
    report = lambda record: (markdown(record), plot(record))
    return h.run("exactness", p, measure, report, argv)


if __name__ == "__main__":
    main()
