"""Stability map in the complex β-plane, and holomorphic EP at fractions of the
safe |β| (benchmarks/README.md, "Stability map and safe |β|")."""

import _harness as h
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np

import holoode


F64 = jnp.float64


def measure(args):
    width, batch, num, num_radii = (64, 64, 101, 32) if args.full else (32, 16, 41, 16)
    sizes, cost = (64, width, 10), holoode.CrossEntropy()
    model = holoode.nn.HopfieldMLP(sizes, key=jr.key(0), gain=args.gain, dtype=F64)
    x, y, newton = *h.digits(batch), holoode.RootFind(rtol=1e-12, atol=1e-12)
    # 1. The map for one example, with the dynamics (at most 1024 steps).
    one = float(holoode.safe_beta(model, x[:1], y[:1], cost=cost, solver=newton))
    betas = holoode.beta_grid(2.5 * one, num)
    ode = holoode.SteadyStateODE(max_steps=1024)
    kw = dict(cost=cost, betas=betas, solver=ode, num_radii=num_radii)
    result, seconds = h.timed(lambda: holoode.stability_map(model, x[0], y[0], **kw))
    radius, reached = float(result.radius), np.asarray(result.reached)
    title = f"HopfieldMLP (64, {width}, 10), one digit; SteadyStateODE; R ≈ "
    title += f"{radius:.3g} (safe_beta, Newton: {one:.3g})"
    holoode.plot_stability_map(result, args.out / "stability.png", title=title)
    mismatch = np.asarray(result.mismatch)
    inside = np.abs(np.asarray(result.betas)) < radius
    summary = dict(radius_map=radius, safe_beta_one_example=one, extent=2.5 * one)
    summary |= dict(grid=f"{num}x{num}", seconds=seconds)
    fractions = dict(reached=reached, reached_inside_radius=reached[inside])
    fractions |= dict(continued=result.continued, judged=np.isfinite(mismatch))
    summary |= {f"fraction_{k}": float(np.mean(v)) for k, v in fractions.items()}
    summary |= dict(max_mismatch_judged=float(np.nanmax(mismatch)))
    print(summary)
    # 2. The safe |β| of a batch against the accuracy of holomorphic EP (N = 16).
    safe = lambda: holoode.safe_beta(model, x, y, cost=cost, solver=newton)
    (radius, seconds), checks = h.timed(safe), []
    radius = float(radius)
    exact = holoode.ImplicitDifferentiation(linear_solver=lx.LU())
    exact = holoode.gradient(exact, model, x, y, cost=cost, solver=newton)[0]
    for fraction in [0.25, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0]:
        rule = holoode.HolomorphicEP(fraction * radius, 16)
        grads, info = holoode.gradient(
            rule, model, x, y, cost=cost, solver=newton, throw=False
        )
        lost = bool(info.result == holoode.RESULTS.continuation_lost)
        check = dict(fraction=fraction, beta=fraction * radius, continuation_lost=lost)
        check |= dict(rel_error=h.rel_error(grads, exact))
        checks.append(check | dict(max_radius_ratio=float(jnp.max(info.radius_ratio))))
        print(f"  {checks[-1]}", flush=True)
    config = dict(sizes=sizes, gain=args.gain, batch=batch, num_radii=num_radii)
    config |= dict(map_solver="SteadyStateODE(max_steps=1024)", full=args.full)
    safe = dict(batch=radius, seconds=seconds, hep_checks=checks)
    return dict(config=config, map=summary, safe_beta=safe)


def main(argv=None):
    p = h.parser(__doc__, full=True, replot=False)  # the map is not in the JSON
    p.add_argument("--gain", type=float, default=2.0, help="weight scale")
    return h.run("stability", p, measure, lambda record: (None, None), argv)


if __name__ == "__main__":
    main()
