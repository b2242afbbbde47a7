"""Gradient accuracy of classic and holomorphic EP against depth and |β|
(Laborieux & Zenke 2022, Fig. 4 analogue; benchmarks/README.md, "Depth")."""

import _harness as h
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np

import holoode


def measure(args):
    if args.full:
        width, batch, num_points = 128, 128, [4, 8]
        betas = [0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0]
    else:
        width, batch, num_points = 32, 16, [4]
        betas = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    rules = {"EP one-sided": holoode.ClassicEP}
    rules["EP symmetric"] = lambda b: holoode.ClassicEP(b, symmetric=True)
    for n in num_points:
        rules[f"hEP N={n}"] = lambda b, n=n: holoode.HolomorphicEP(b, n)
    (x, y), cost, depths = h.digits(batch), holoode.CrossEntropy(), [1, 2, 3, 4]
    solver = holoode.RootFind(rtol=1e-12, atol=1e-12)
    exact_rule = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    results, radii = [], {}
    for depth in depths:
        sizes = (64,) + (width,) * depth + (10,)
        model = holoode.nn.HopfieldMLP(sizes, key=jr.key(depth), dtype=jnp.float64)
        exact, _ = holoode.gradient(exact_rule, model, x, y, cost=cost, solver=solver)
        radii[depth] = float(holoode.safe_beta(model, x, y, cost=cost, solver=solver))
        print(f"depth {depth} {sizes}: estimated safe |β| = {radii[depth]:.3g}")
        for name, make in rules.items():
            for beta in betas:
                grads, info = holoode.gradient(
                    make(beta), model, x, y, cost=cost, solver=solver, throw=False
                )
                row = dict(depth=depth, rule=name, beta=beta)
                row |= dict(rel_error=h.rel_error(grads, exact))
                row |= dict(cosine=h.cosine(grads, exact))
                results.append(row | dict(result=h.result_name(info.result)))
                print(f"  {results[-1]}", flush=True)
    config = dict(sizes=f"(64, {width} × depth, 10)", depths=depths, batch=batch)
    config |= dict(betas=betas, num_points=num_points, dtype="float64", full=args.full)
    config |= dict(solver="RootFind(rtol=1e-12, atol=1e-12)", reference="implicit, LU")
    return dict(config=config, safe_beta=radii, results=results)


def plot(record):
    depths, results = record["config"]["depths"], record["results"]
    radii = {int(k): v for k, v in record["safe_beta"].items()}  # JSON: str keys
    size = (3.2 * len(depths), 6.0)
    fig, axes = h.figure(2, len(depths), size, sharex=True, sharey="row")
    for col, depth in enumerate(depths):
        for name in dict.fromkeys(r["rule"] for r in results):
            rows = [r for r in results if r["depth"] == depth and r["rule"] == name]
            b = [r["beta"] for r in rows]
            rel = [max(r["rel_error"], 1e-16) for r in rows]
            (line,) = axes[0, col].loglog(b, rel, "o-", label=name, ms=4)
            cos = [max(1 - r["cosine"], 1e-16) for r in rows]
            axes[1, col].loglog(b, cos, "o-", color=line.get_color(), ms=4)
            lost = [i for i, r in enumerate(rows) if r["result"] != "successful"]
            axes[0, col].loglog(np.take(b, lost), np.take(rel, lost), "x", c="k", ms=8)
        for ax in axes[:, col]:
            if np.isfinite(radius := radii[depth]):
                ax.axvline(radius, color="gray", ls="--", lw=1)
            ax.grid(True, which="major", alpha=0.3)
        axes[0, col].set_title(f"{depth} hidden layer{'s' if depth > 1 else ''}")
        axes[1, col].set_xlabel("|β|")
    axes[0, 0].set_ylabel("relative error vs exact")
    axes[1, 0].set_ylabel("1 − cosine similarity")
    axes[0, 0].legend(fontsize=8)
    title = "Gradient vs exact (implicit differentiation); dashed: estimated safe |β|"
    fig.suptitle(title + "; ×: result not successful")
    return fig


def main(argv=None):
    p = h.parser(__doc__, full=True)
    return h.run("depth", p, measure, lambda record: (None, plot(record)), argv)


if __name__ == "__main__":
    main()
