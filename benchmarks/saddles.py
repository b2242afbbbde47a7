"""Saddles of the paper's network where Anderson acceleration stops, and the free
phase (benchmarks/README.md, "Saddles of the paper's network")."""

import _harness as h
import _yardstick as ys
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax.flatten_util import ravel_pytree

import holoode
from holoode._equilibrium.stable import unstable_direction


BATCH = 50


def measure_state(state: str, images: int) -> dict:
    model, solver = ys.network(state), holoode.AndersonAcceleration(memory=10)
    start = lambda x: holoode.initial_states(model, x, jnp.float32)
    solve = lambda s: (
        lambda x, y: holoode.solve_batch(s, model, x, y, ys.COST, 0.0, start(x))
    )
    bare, dynamics = jax.jit(solve(solver)), jax.jit(solve(holoode.SteadyStateODE()))
    free = lambda x, y: holoode.solve_free(solver, model, x, y, ys.COST, start(x))
    free = jax.jit(free)
    check = jax.jit(jax.vmap(lambda u, x: unstable_direction(model, u, x)[0]))

    def largest_re_eigenvalue(u, x, y) -> float:  # of the dense Jacobian, float64
        flat, unravel = ravel_pytree(u)
        field = lambda v: ravel_pytree(
            model.vector_field(unravel(v), x, y, 0.0, ys.COST)
        )
        jacobian = np.asarray(jax.jacfwd(lambda v: field(v)[0])(flat), np.float64)
        return float(np.max(np.linalg.eigvals(jacobian).real))

    rows = []
    for first in range(0, images, BATCH):
        x, y = ys.mnist(first, first + BATCH)
        sol, after, physical = bare(x, y), free(x, y), dynamics(x, y)
        flagged = np.asarray(check(sol.value, x))
        for b in range(BATCH):
            at = lambda s: jtu.tree_map(lambda a: a[b], s.value)
            u, v, w = at(sol), at(after), at(physical)
            gap = float(np.linalg.norm(ravel_pytree(v)[0] - ravel_pytree(w)[0]))
            row = dict(image=first + b, converged=bool(sol.result._value[b] == 0))
            row |= dict(steps=int(sol.num_steps[b]), flagged=bool(flagged[b]))
            row |= dict(max_re_eigenvalue=largest_re_eigenvalue(u, x[b], y[b]))
            row |= dict(after_converged=bool(after.result._value[b] == 0))
            row |= dict(after_steps=int(after.num_steps[b]), distance_to_dynamics=gap)
            after_re = largest_re_eigenvalue(v, x[b], y[b])
            rows.append(row | dict(after_max_re_eigenvalue=after_re))
    conv = [r for r in rows if r["converged"]]
    saddles = [r for r in conv if r["max_re_eigenvalue"] > 0]
    out = dict(state=state, images=len(rows), anderson_converged=len(conv))
    out |= dict(anderson_saddles=len(saddles))
    out |= dict(saddles_flagged=sum(r["flagged"] for r in saddles))
    alarms = [r for r in conv if r["flagged"] and r["max_re_eigenvalue"] <= 0]
    out |= dict(false_alarms=len(alarms))
    out |= dict(after_unstable=sum(r["after_max_re_eigenvalue"] > 0 for r in rows))
    out |= dict(after_not_converged=sum(not r["after_converged"] for r in rows))
    out |= dict(other_stable_state=sum(r["distance_to_dynamics"] > 0.1 for r in rows))
    return out | dict(rows=rows)


def report(record):
    results = record["results"]
    keys = list(results[0])[:-1]  # the counts, in the order of the columns
    columns = "state,images,Anderson converged,of which saddles,flagged by the check"
    columns += ",false alarms,unstable after the free phase,not converged after"
    columns += ",another state than the dynamics'"
    text = h.table(columns.split(","), [[r[k] for k in keys] for r in results])
    fig, (axes,) = h.figure(1, len(results), size=(5 * len(results), 3.6))
    for ax, res in zip(axes, results):
        before = [r["max_re_eigenvalue"] for r in res["rows"]]
        after = [r["after_max_re_eigenvalue"] for r in res["rows"]]
        ax.scatter(range(len(before)), before, s=8, label="Anderson alone")
        ax.scatter(range(len(after)), after, s=8, marker="x", label="free phase")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel="image", ylabel="largest Re λ of the Jacobian")
        ax.set_title(f"{res['state']}: {res['anderson_saddles']} saddles")
        ax.legend(fontsize=8)
    return text, fig


def main(argv=None):
    p = h.parser(__doc__, states=True)
    p.add_argument("--images", type=int, default=200, help="a multiple of 50")
    measure = lambda args: dict(
        settings=dict(images=args.images, batch=BATCH),
        results=[measure_state(s, args.images) for s in args.states or ys.STATES],
    )
    return h.run("saddles", p, measure, report, argv)


if __name__ == "__main__":
    main()
