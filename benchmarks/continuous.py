"""Continuous-time hEP and neuron noise: a scaled-down Table 1 and Fig. 3a/b of
Laborieux & Zenke (NeurIPS 2022) on scikit-learn's 8×8 digits.

Three experiments, all in one run:

1. **Training under neuron noise (Table 1 analogue).** A 2-hidden-layer
   `holoode.nn.HopfieldMLP((64, h, h, 10))` trained on the embedded digits data
   (1437 train / 360 test) with `holoode.train(holoode.TrainConfig(...))` (the
   `holoode train` loop: SGD with momentum 0.9, fixed-point free phase at
   rtol 1e-4, float32; a step whose rule reports a failure is skipped), for
   the rules of the paper's table, with neuron noise σ = 0 and σ = 0.04
   (`noise_std`, i.e. `holoode.NeuronNoise(σ)` with its defaults
   duration 10, samples 10, dt 0.1 — `TrainConfig` does not expose them, so
   they are kept): classic EP one-sided β = 0.1 and β = 0.4, hEP N = 10
   |β| = 0.4, continuous hEP |β| = 0.4 (period T, K periods, below), plus
   backprop (implicit differentiation, σ = 0) as a reference row. Reported:
   final test accuracy, mean ± sample std over seeds, and the number of
   training steps the loop skipped (with the reasons in the JSON logs).
2. **Gradient quality under noise.** Cosine similarity and relative L2 error
   of each rule's gradient against the exact gradient (implicit
   differentiation with a dense LU adjoint at a fixed point solved to 1e-12),
   float64, one fixed batch of 16 training digits, on a fixed partly trained
   network (40 SGD steps with exact gradients from the initial one, so that it
   is past the trivial initial regime), mean ± std over 4 noise keys. EP and
   hEP solve their equilibria with the same tight fixed-point solver;
   continuous hEP integrates its own dynamics (Tsit5, rtol 1e-8; with noise,
   Euler–Maruyama at dt 0.1).
3. **Period sweep (Fig. 3a/b analogue).** Relative error of
   `holoode.ContinuousHEP` against the exact gradient versus the period
   T ∈ {10, …, 400} (one period after the default ½-period warm-up; plain and
   `richardson=True`), versus the number K of elapsed periods at T = 50 with
   no warm-up (the start-up transient is averaged out like 1/K), and the
   lag-based `info.error_estimate` against the true error; float64,
   noise-free, on the initial network (|β| = 0.4) and the partly trained one
   (|β| = 0.4 and 0.1), with hEP N = 10 at the same |β| for comparison.

Continuous-hEP schedule for training: the bias falls like (τ/T)² (τ: the
relaxation time, a few time units), and with noise every run is an SDE
integrated with 10 Euler–Maruyama steps per time unit over (½ + K)·T, so the
cost is linear in T. Experiment 3 gives, on the initial network, relative
errors 0.41, 0.17, 0.036 for T = 10, 20, 50 (cosine 0.91, 0.987, 0.9995), and
on the partly trained one a much slower convergence (a single slowly relaxing
example dominates the error until T ≈ 200). T = 30, K = 1 (cosine ≈ 0.997 on
the initial and ≈ 0.98 on the partly trained network) is the compromise that
fits the time budget; averaging more periods (the paper used 3) reduces the
noise variance but not the bias. `--full` uses T = 50, K = 3.

Sizes (`PRESETS`): the default (h = 32, batch 32, SGD lr 0.02 with momentum 0.9,
8 epochs, 3 seeds) took 872 s wall (865 CPU-seconds) on 2 cores shared with
other jobs; lr 0.1 made every rule, backprop included, diverge on this
2-hidden-layer network within a few epochs. Most of the time goes to the noisy
and continuous runs. `--full` is the paper-like setting (h = 128, batch 32,
30 epochs, 3 seeds; hours on a CPU, not validated here); `--quick` is a smoke
test (h = 8, one epoch, EP β = 0.1 only, about a minute).

Jobs run longest-first in a pool of `--workers` processes (default 2) that
share a persistent compilation cache in a fresh temporary directory, so later
seeds reuse the compiled training step.

Usage:

    python benchmarks/continuous.py            # default size (~15 min, 2 cores)
    python benchmarks/continuous.py --quick    # smoke size (~1 min)
    python benchmarks/continuous.py --full     # paper-like size (hours on a CPU)
    python benchmarks/continuous.py --out DIR  # where the JSON and PNGs go
    python benchmarks/continuous.py --rules hep,hep0.2 --no-bp --no-float64
                                               # a subset (e.g. hEP at |β| = 0.2)
"""

import argparse
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import as_completed, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


GRAD_RULES = ("ep0.1", "ep0.4", "hep", "cont")

PRESETS = {
    "quick": dict(
        hidden=8,
        seeds=[0],
        epochs=1,
        batch_size=256,
        learning_rate=0.1,
        period=20.0,
        num_periods=1,
        grad_hidden=8,
        grad_batch=4,
        grad_keys=2,
        pretrain_steps=0,
        sweep_periods=[10.0, 40.0],
        sweep_elapsed=[],
        sweep_elapsed_period=20.0,
        sweeps=[["initial", 0.4]],
        sweep_hep=False,
        rules=["ep0.1"],
        bp=False,
        workers=2,
    ),
    "default": dict(
        hidden=32,
        seeds=[0, 1, 2],
        epochs=8,
        batch_size=32,
        learning_rate=0.02,
        period=30.0,
        num_periods=1,
        grad_hidden=32,
        grad_batch=16,
        grad_keys=4,
        pretrain_steps=40,
        sweep_periods=[10.0, 20.0, 50.0, 100.0, 200.0, 400.0],
        sweep_elapsed=[1, 2, 4, 8],
        sweep_elapsed_period=50.0,
        sweeps=[["initial", 0.4], ["trained", 0.4], ["trained", 0.1]],
        sweep_hep=True,
        rules=list(GRAD_RULES),
        bp=True,
        workers=2,
    ),
    "full": dict(
        hidden=128,
        seeds=[0, 1, 2],
        epochs=30,
        batch_size=32,
        learning_rate=0.05,
        period=50.0,
        num_periods=3,
        grad_hidden=128,
        grad_batch=64,
        grad_keys=8,
        pretrain_steps=100,
        sweep_periods=[10.0, 20.0, 50.0, 100.0, 200.0, 400.0, 800.0],
        sweep_elapsed=[1, 2, 4, 8, 16],
        sweep_elapsed_period=50.0,
        sweeps=[["initial", 0.4], ["trained", 0.4], ["trained", 0.1]],
        sweep_hep=True,
        rules=list(GRAD_RULES),
        bp=True,
        workers=2,
    ),
}

NOISE_LEVELS = (0.0, 0.04)
BETA_HEP = 0.4


def rule_specs(settings):
    """`{key: (label, TrainConfig keyword arguments)}` for every rule; the paper's
    Table 1 rules are `GRAD_RULES`, `hep0.2` is an extra (``--rules``)."""
    period, k = settings["period"], settings["num_periods"]
    return {
        "ep0.1": ("EP β=0.1", dict(rule="ep", beta=0.1)),
        "ep0.4": ("EP β=0.4", dict(rule="ep", beta=0.4)),
        "hep": ("hEP N=10 |β|=0.4", dict(rule="hep", beta=BETA_HEP, num_points=10)),
        "hep0.2": ("hEP N=10 |β|=0.2", dict(rule="hep", beta=0.2, num_points=10)),
        "cont": (
            f"cont. hEP |β|=0.4 T={period:g} K={k}",
            dict(rule="continuous", beta=BETA_HEP, period=period, num_periods=k),
        ),
    }


# ---------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------


def _init_worker(cache_dir):
    sys.path.insert(0, str(ROOT))
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def train_job(job):
    """One `train(TrainConfig(...))` run; returns its metrics and wall time."""
    from holoode import train, TrainConfig

    start = time.perf_counter()
    lines = []
    config = TrainConfig(**job["config"])
    result = train(config, log=lines.append)
    return {
        "kind": "train",
        "label": job["label"],
        "noise_std": job["config"]["noise_std"],
        "seed": job["config"]["seed"],
        "config": config.to_dict(),
        "test_accuracy": float(result["test_accuracy"]),
        "train_loss": float(result["train_loss"]),
        "skipped_steps": int(result["skipped_steps"]),
        "train_seconds": float(result["seconds"]),
        "wall_s": time.perf_counter() - start,
        "log": lines,
        "pid": os.getpid(),
    }


def _grad_rule(ho, key, settings, noise):
    """(label, rule, solver name) for experiment 2."""
    label, kw = rule_specs(settings)[key]
    if kw["rule"] == "ep":
        return label, ho.ClassicEP(kw["beta"], noise=noise), "tight"
    if kw["rule"] == "hep":
        rule = ho.HolomorphicEP(kw["beta"], kw["num_points"], noise=noise)
        return label, rule, "tight"
    rule = ho.ContinuousHEP(kw["beta"], kw["period"], kw["num_periods"], noise=noise)
    return label, rule, "ode"


class _Float64:
    """The float64 problem shared by experiments 2 and 3: one fixed batch, the
    initial network and a partly trained one, exact reference gradients."""

    def __init__(self, settings, trained_leaves=None):
        import equinox as eqx
        import jax
        import jax.numpy as jnp
        import jax.random as jr
        import lineax as lx

        import holoode as ho

        self.ho, self.settings = ho, settings
        h = settings["grad_hidden"]
        self.cost = ho.CrossEntropy()
        # Newton from the zero state can leave the basin of the free equilibrium;
        # the damped fixed-point iteration (the dynamics) is the robust free solve.
        self.tight = ho.FixedPointIteration(
            step_size=0.5, rtol=1e-12, atol=1e-12, max_steps=50_000
        )
        self.exact = ho.ImplicitDifferentiation(linear_solver=lx.LU())
        train = ho.data.load("digits", "train")
        x_train, y_train = train.get(jnp.arange(len(train)))
        x_train = x_train.reshape(len(x_train), -1)
        self.x_train, self.y_train = x_train, y_train
        self.x = jnp.asarray(x_train[: settings["grad_batch"]], jnp.float64)
        self.y = jnp.asarray(y_train[: settings["grad_batch"]])
        self.initial = ho.nn.HopfieldMLP(
            (64, h, h, 10), key=jr.key(1234), dtype=jnp.float64
        )
        self.sizes = (64, h, h, 10)
        if trained_leaves is not None:
            params, static = eqx.partition(self.initial, eqx.is_inexact_array)
            treedef = jax.tree_util.tree_structure(params)
            params = jax.tree_util.tree_unflatten(
                treedef, [jnp.asarray(a, jnp.float64) for a in trained_leaves]
            )
            self.trained = eqx.combine(params, static)
        x, y, cost = self.x, self.y, self.cost

        @eqx.filter_jit
        def estimate(rule, model, key, solver):
            return ho.gradient(
                rule, model, x, y, cost=cost, solver=solver, key=key, throw=False
            )

        self.estimate = estimate
        self._refs = {}

    def network(self, name):
        return self.initial if name == "initial" else self.trained

    def solver(self, name):
        return self.tight if name == "tight" else self.ho.SteadyStateODE()

    def reference(self, name):
        if name not in self._refs:
            g, info = self.ho.gradient(
                self.exact,
                self.network(name),
                self.x,
                self.y,
                cost=self.cost,
                solver=self.tight,
            )
            self._refs[name] = (self.flat(g), float(info.loss))
        return self._refs[name]

    @staticmethod
    def flat(tree):
        import jax
        import numpy as np

        return np.concatenate(
            [np.asarray(a, np.float64).ravel() for a in jax.tree_util.tree_leaves(tree)]
        )

    def compare(self, g, name):
        import numpy as np

        g, ref = self.flat(g), self.reference(name)[0]
        return (
            float(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref))),
            float(np.linalg.norm(g - ref) / np.linalg.norm(ref)),
        )


def pretrain_job(payload):
    """The partly trained float64 network: a few SGD steps (lr 0.05, momentum
    0.9, batch 64) with exact gradients from the initial network."""
    import jax

    start = time.perf_counter()
    with jax.enable_x64(True):
        import equinox as eqx
        import jax.numpy as jnp
        import numpy as np
        import optax

        p = _Float64(payload["settings"])
        ho, cost, tight = p.ho, p.cost, p.tight
        optim = optax.sgd(0.05, momentum=0.9)

        @eqx.filter_jit
        def bp_step(model, opt_state, xb, yb):
            grads, info = ho.gradient(
                ho.ImplicitDifferentiation(),
                model,
                xb,
                yb,
                cost=cost,
                solver=tight,
                throw=False,
            )
            updates, opt_state = optim.update(grads, opt_state)
            return (
                eqx.apply_updates(model, updates),
                opt_state,
                info.loss,
                info.result._value,
            )

        model = p.initial
        opt_state = optim.init(eqx.filter(model, eqx.is_inexact_array))
        rng = np.random.default_rng(0)
        losses, skipped = [], 0
        for _ in range(payload["settings"]["pretrain_steps"]):
            idx = rng.choice(len(p.x_train), 64, replace=False)
            new, new_state, loss, code = bp_step(
                model,
                opt_state,
                jnp.asarray(p.x_train[idx], jnp.float64),
                jnp.asarray(p.y_train[idx]),
            )
            if int(code) == 0:
                model, opt_state = new, new_state
            else:
                skipped += 1
            losses.append(float(loss))
        leaves = [
            np.asarray(a)
            for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
        ]
    return {
        "kind": "pretrain",
        "leaves": leaves,
        "losses": losses,
        "skipped": skipped,
        "wall_s": time.perf_counter() - start,
        "pid": os.getpid(),
    }


def grad_job(payload):
    """Experiment 2 for one rule and noise level on the partly trained network."""
    import jax

    start = time.perf_counter()
    with jax.enable_x64(True):
        import jax.random as jr
        import numpy as np

        s = payload["settings"]
        p = _Float64(s, payload["trained"])
        p.reference("trained")
        noise_std = payload["noise_std"]
        noise = p.ho.NeuronNoise(noise_std) if noise_std > 0 else None
        label, rule, solver = _grad_rule(p.ho, payload["rule"], s, noise)
        keys = range(s["grad_keys"]) if noise is not None else range(1)
        cos, rel, codes, secs = [], [], [], []
        for k in keys:
            t1 = time.perf_counter()
            key = jr.key(100 + k) if noise is not None else None
            g, info = p.estimate(rule, p.trained, key, p.solver(solver))
            g = jax.block_until_ready(g)
            secs.append(time.perf_counter() - t1)
            c, r = p.compare(g, "trained")
            cos.append(c)
            rel.append(r)
            codes.append(int(info.result._value))
    return {
        "kind": "grad",
        "rule": label,
        "noise_std": noise_std,
        "network": "trained",
        "cosine": cos,
        "rel_error": rel,
        "result_codes": codes,
        "cosine_mean": float(np.mean(cos)),
        "cosine_std": float(np.std(cos, ddof=1)) if len(cos) > 1 else 0.0,
        "rel_error_mean": float(np.mean(rel)),
        "rel_error_std": float(np.std(rel, ddof=1)) if len(rel) > 1 else 0.0,
        "seconds_first_call": secs[0],
        "seconds_per_call_after_first": float(np.median(secs[1:]))
        if len(secs) > 1
        else None,
        "free_loss": p.reference("trained")[1],
        "wall_s": time.perf_counter() - start,
        "pid": os.getpid(),
    }


def sweep_job(payload):
    """Experiment 3 for one network and |β|: error against the period (plain and
    Richardson), against elapsed periods, and the lag estimate."""
    import jax

    start = time.perf_counter()
    with jax.enable_x64(True):
        import numpy as np

        s = payload["settings"]
        p = _Float64(s, payload["trained"])
        ho, net, beta = p.ho, payload["network"], payload["beta"]
        model, ode = p.network(net), ho.SteadyStateODE()
        rows = []
        for period in s["sweep_periods"]:
            for richardson in (False, True):
                rule = ho.ContinuousHEP(beta, period, 1, richardson=richardson)
                t1 = time.perf_counter()
                g, info = p.estimate(rule, model, None, ode)
                g = jax.block_until_ready(g)
                c, r = p.compare(g, net)
                rows.append(
                    {
                        "period": period,
                        "richardson": richardson,
                        "rel_error": r,
                        "cosine": c,
                        "error_estimate": float(info.error_estimate),
                        "num_steps": int(np.max(info.num_steps)),
                        "result_code": int(info.result._value),
                        "seconds": time.perf_counter() - t1,
                    }
                )
        elapsed = []
        for k in s["sweep_elapsed"]:
            rule = ho.ContinuousHEP(beta, s["sweep_elapsed_period"], k, warmup=0.0)
            g, info = p.estimate(rule, model, None, ode)
            c, r = p.compare(g, net)
            elapsed.append(
                {
                    "num_periods": k,
                    "rel_error": r,
                    "cosine": c,
                    "error_estimate": float(info.error_estimate),
                    "result_code": int(info.result._value),
                }
            )
        # The N-point estimator at the same |β|: the T → ∞ limit of continuous hEP
        # if the circle lies inside the equilibrium's radius of analyticity.
        hep = None
        if s["sweep_hep"]:
            g, info = p.estimate(ho.HolomorphicEP(beta, 10), model, None, p.tight)
            c, r = p.compare(g, net)
            hep = {
                "num_points": 10,
                "rel_error": r,
                "result_code": int(info.result._value),
                "max_radius_ratio": float(np.nanmax(np.asarray(info.radius_ratio))),
                "error_estimate": float(info.error_estimate),
            }
    return {
        "kind": "sweep",
        "network": net,
        "beta": beta,
        "periods": rows,
        "elapsed": elapsed,
        "elapsed_period": s["sweep_elapsed_period"],
        "hep_same_beta": hep,
        "free_loss": p.reference(net)[1],
        "wall_s": time.perf_counter() - start,
        "pid": os.getpid(),
    }


# ---------------------------------------------------------------------------
# Main process: scheduling, tables, plots
# ---------------------------------------------------------------------------


def _train_cost(kwargs, noise_std, settings):
    """A rough cost (seconds on a 2-core CPU), for longest-first scheduling."""
    base = {"ep": 8, "bp": 8, "hep": 12, "continuous": 20}[kwargs["rule"]]
    if noise_std > 0:
        per_epoch = {"ep": 20, "hep": 35, "continuous": 2.5 * settings["period"]}
        base = 30 + per_epoch[kwargs["rule"]] * settings["epochs"]
    return base


def make_train_jobs(settings):
    jobs = []
    specs = [
        (label, kwargs)
        for key, (label, kwargs) in rule_specs(settings).items()
        if key in settings["rules"]
    ]
    if settings["bp"]:
        specs.append(("BP (implicit diff.)", dict(rule="bp")))
    for label, kwargs in specs:
        for noise_std in NOISE_LEVELS:
            if kwargs["rule"] == "bp" and noise_std > 0:
                continue
            for seed in settings["seeds"]:
                config = dict(
                    kwargs,
                    noise_std=noise_std,
                    hidden=(settings["hidden"],) * 2,
                    epochs=settings["epochs"],
                    batch_size=settings["batch_size"],
                    learning_rate=settings["learning_rate"],
                    seed=seed,
                )
                cost = _train_cost(kwargs, noise_std, settings)
                # Later seeds reuse the first seed's compiled step.
                cost -= 0 if seed == settings["seeds"][0] else 5
                jobs.append((cost, train_job, {"label": label, "config": config}))
    return jobs


def make_float64_jobs(settings, trained):
    jobs = []
    for key in settings["rules"]:
        for noise_std in NOISE_LEVELS:
            cost = 20 if noise_std == 0 else {"ep0.1": 30, "ep0.4": 30}.get(key, 60)
            payload = dict(settings=settings, trained=trained, rule=key)
            jobs.append((cost, grad_job, dict(payload, noise_std=noise_std)))
    for network, beta in settings["sweeps"]:
        payload = dict(settings=settings, trained=trained, network=network, beta=beta)
        jobs.append((80, sweep_job, payload))
    return jobs


def mean_std(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def training_table(results, settings):
    present = {r["label"] for r in results}
    labels = [label for label, _ in rule_specs(settings).values()]
    labels.append("BP (implicit diff.)")
    labels = [label for label in labels if label in present]
    rows = []
    header = (
        "| rule | σ = 0: test acc. (%) | σ = 0.04: test acc. (%) | skipped steps "
        "σ=0 / σ=0.04 | wall s per run σ=0 / σ=0.04 |\n|---|---|---|---|---|"
    )
    summary = []
    for label in labels:
        cells, skipped, walls = [], [], []
        entry = {"rule": label}
        for noise_std in NOISE_LEVELS:
            runs = [
                r
                for r in results
                if r["label"] == label and r["noise_std"] == noise_std
            ]
            if not runs:
                cells.append("—")
                skipped.append("—")
                walls.append("—")
                continue
            accs = [100 * r["test_accuracy"] for r in runs]
            m, sd = mean_std(accs)
            cells.append(f"{m:.1f} ± {sd:.1f} (n={len(runs)})")
            skipped.append(str(sum(r["skipped_steps"] for r in runs)))
            walls.append(f"{sum(r['wall_s'] for r in runs) / len(runs):.0f}")
            entry[f"sigma={noise_std:g}"] = {
                "accuracy_mean": m,
                "accuracy_std": sd,
                "accuracies": accs,
                "skipped_steps": [r["skipped_steps"] for r in runs],
                "wall_s": [r["wall_s"] for r in runs],
            }
        summary.append(entry)
        rows.append(
            f"| {label} | {cells[0]} | {cells[1]} | {' / '.join(skipped)} | "
            f"{' / '.join(walls)} |"
        )
    return header + "\n" + "\n".join(rows), summary


def gradient_table(f64):
    lines = [
        "| rule | σ | cosine to exact (mean ± std) | rel. L2 error (mean ± std) | "
        "result codes | s / call |",
        "|---|---|---|---|---|---|",
    ]
    for row in f64["gradients"]:
        sec = row["seconds_per_call_after_first"]
        sec = f"{sec:.2f}" if sec is not None else f"{row['seconds_first_call']:.2f}*"
        lines.append(
            f"| {row['rule']} | {row['noise_std']:g} | {row['cosine_mean']:.4f} ± "
            f"{row['cosine_std']:.4f} (n={len(row['cosine'])}) | "
            f"{row['rel_error_mean']:.3f} ± {row['rel_error_std']:.3f} | "
            f"{','.join(str(c) for c in sorted(set(row['result_codes'])))} | {sec} |"
        )
    return "\n".join(lines)


def sweep_tables(f64):
    out = []
    for sw in f64["sweeps"]:
        by = {(r["period"], r["richardson"]): r for r in sw["periods"]}
        periods = sorted({r["period"] for r in sw["periods"]})
        lines = [
            f"**network {sw['network']}, |β| = {sw['beta']:g}** (free loss "
            f"{sw['free_loss']:.3f}"
            + (
                f"; hEP N=10 at the same |β|: rel. error "
                f"{sw['hep_same_beta']['rel_error']:.2e}, result code "
                f"{sw['hep_same_beta']['result_code']}, max radius ratio "
                f"{sw['hep_same_beta']['max_radius_ratio']:.2f})"
                if sw["hep_same_beta"]
                else ")"
            ),
            "",
            "| T | rel. error | local slope | lag estimate | rel. error (Richardson) "
            "| local slope | estimate (Richardson) | steps (plain) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        prev = None
        for p in periods:
            a, b = by[(p, False)], by[(p, True)]
            if prev is None:
                sa = sb = "—"
            else:
                q, pa, pb = prev
                sa = f"{math.log(a['rel_error'] / pa) / math.log(p / q):.2f}"
                sb = f"{math.log(b['rel_error'] / pb) / math.log(p / q):.2f}"
            prev = (p, a["rel_error"], b["rel_error"])
            lines.append(
                f"| {p:g} | {a['rel_error']:.2e} | {sa} | {a['error_estimate']:.2e} | "
                f"{b['rel_error']:.2e} | {sb} | {b['error_estimate']:.2e} | "
                f"{a['num_steps']} |"
            )
        if sw["elapsed"]:
            lines += [
                "",
                f"relative error after K elapsed periods at T = "
                f"{sw['elapsed_period']:g}, no warm-up: "
                + ", ".join(
                    f"K={e['num_periods']}: {e['rel_error']:.2e}" for e in sw["elapsed"]
                ),
            ]
        out.append("\n".join(lines))
    return "\n\n".join(out)


def fitted_slope(xs, ys):
    import numpy as np

    lx_, ly = np.log(np.asarray(xs)), np.log(np.asarray(ys))
    return float(np.polyfit(lx_, ly, 1)[0])


def plot_periods(f64, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, sw in enumerate(f64["sweeps"]):
        c = colors[i % len(colors)]
        name = f"{sw['network']}, |β|={sw['beta']:g}"
        ks = [e["num_periods"] for e in sw["elapsed"]]
        axes[0].loglog(
            ks, [e["rel_error"] for e in sw["elapsed"]], "o-", color=c, label=name
        )
        for rich, style in ((False, "o-"), (True, "s--")):
            rows = [r for r in sw["periods"] if r["richardson"] == rich]
            ts = [r["period"] for r in rows]
            axes[1].loglog(
                ts,
                [r["rel_error"] for r in rows],
                style,
                color=c,
                label=f"{name}{', Richardson' if rich else ''}",
            )
            axes[2].loglog(
                [r["rel_error"] for r in rows],
                [r["error_estimate"] for r in rows],
                "s" if rich else "o",
                color=c,
                mfc="none" if rich else c,
                label=f"{name}{', Richardson' if rich else ''}",
            )
    ts = np.asarray(
        sorted({r["period"] for sw in f64["sweeps"] for r in sw["periods"]})
    )
    ref = f64["sweeps"][0]["periods"]
    y0 = [r["rel_error"] for r in ref if not r["richardson"]][0]
    axes[1].loglog(ts, y0 * (ts / ts[0]) ** -2.0, "k:", lw=1, label="slope −2")
    axes[1].loglog(ts, y0 * (ts / ts[0]) ** -4.0, "k-.", lw=1, label="slope −4")
    ks = np.asarray(
        sorted({e["num_periods"] for sw in f64["sweeps"] for e in sw["elapsed"]})
    )
    if len(ks):
        e0 = f64["sweeps"][0]["elapsed"][0]["rel_error"]
        axes[0].loglog(ks, e0 / ks, "k:", lw=1, label="slope −1")
    lo = min(
        min(r["rel_error"], r["error_estimate"])
        for sw in f64["sweeps"]
        for r in sw["periods"]
    )
    hi = max(
        max(r["rel_error"], r["error_estimate"])
        for sw in f64["sweeps"]
        for r in sw["periods"]
    )
    axes[2].loglog([lo, hi], [lo, hi], "k-", lw=1, label="estimate = error")
    axes[2].loglog([lo, hi], [lo / 10, hi / 10], "k:", lw=1, label="×1/10, ×10")
    axes[2].loglog([lo, hi], [lo * 10, hi * 10], "k:", lw=1)
    axes[0].set(
        xlabel=f"elapsed periods K (T = {f64['sweeps'][0]['elapsed_period']:g}, "
        "no warm-up)",
        ylabel="relative L2 error vs exact gradient",
        title="(a) averaging over periods",
    )
    axes[1].set(
        xlabel="period T (1 period, ½-period warm-up)",
        ylabel="relative L2 error vs exact gradient",
        title="(b) error vs period length",
    )
    axes[2].set(
        xlabel="true relative error",
        ylabel="info.error_estimate",
        title="(c) lag-based error estimate",
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"ContinuousHEP vs implicit differentiation, float64, HopfieldMLP"
        f"{tuple(f64['network_sizes'])}, batch {f64['batch']} digits"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_table(summary, f64, settings, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [e["rule"] for e in summary]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    width = 0.38
    for j, noise_std in enumerate(NOISE_LEVELS):
        key = f"sigma={noise_std:g}"
        means = [e[key]["accuracy_mean"] if key in e else np.nan for e in summary]
        stds = [e[key]["accuracy_std"] if key in e else 0 for e in summary]
        axes[0].bar(
            np.arange(len(labels)) + (j - 0.5) * width,
            means,
            width,
            yerr=stds,
            capsize=3,
            label=f"σ = {noise_std:g}",
        )
    axes[0].set_xticks(
        np.arange(len(labels)), labels, rotation=20, ha="right", fontsize=8
    )
    axes[0].set(
        ylabel="test accuracy (%)",
        title=f"digits, h={settings['hidden']}, {settings['epochs']} epoch(s), "
        f"{len(settings['seeds'])} seed(s)",
        ylim=(0, 100),
    )
    axes[0].legend()
    if f64["gradients"]:
        rules = list(dict.fromkeys(r["rule"] for r in f64["gradients"]))
        for j, noise_std in enumerate(NOISE_LEVELS):
            rows = {
                r["rule"]: r for r in f64["gradients"] if r["noise_std"] == noise_std
            }
            axes[1].bar(
                np.arange(len(rules)) + (j - 0.5) * width,
                [rows[r]["cosine_mean"] for r in rules],
                width,
                yerr=[rows[r]["cosine_std"] for r in rules],
                capsize=3,
                label=f"σ = {noise_std:g}",
            )
        axes[1].set_xticks(
            np.arange(len(rules)), rules, rotation=20, ha="right", fontsize=8
        )
        axes[1].set(
            ylabel="cosine similarity to exact gradient",
            title="gradient quality, float64, partly trained network",
            ylim=(0, 1.02),
        )
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def versions():
    import diffrax
    import equinox
    import jax
    import jaxlib
    import numpy
    import optax

    sys.path.insert(0, str(ROOT))
    import holoode

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "equinox": equinox.__version__,
        "diffrax": diffrax.__version__,
        "optax": optax.__version__,
        "numpy": numpy.__version__,
        "holoode": holoode.__version__,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke size (< 1 min)")
    size.add_argument("--full", action="store_true", help="paper-like size")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--workers", type=int, default=None, help="processes")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--period", type=float, default=None)
    parser.add_argument("--num-periods", type=int, default=None)
    parser.add_argument(
        "--rules",
        default=None,
        help="comma-separated subset of ep0.1,ep0.4,hep,hep0.2,cont (default: the "
        "preset's, i.e. the paper's four)",
    )
    parser.add_argument(
        "--no-bp", action="store_true", help="skip the backprop reference row"
    )
    parser.add_argument(
        "--no-float64", action="store_true", help="skip experiments 2 and 3"
    )
    args = parser.parse_args(argv)
    preset = "quick" if args.quick else "full" if args.full else "default"
    settings = dict(PRESETS[preset], preset=preset)
    for name in ("workers", "epochs", "hidden", "period", "num_periods"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if args.hidden is not None:
        settings["grad_hidden"] = args.hidden
    if args.seeds is not None:
        settings["seeds"] = list(range(args.seeds))
    if args.rules is not None:
        settings["rules"] = args.rules.split(",")
        unknown = set(settings["rules"]) - set(rule_specs(settings))
        if unknown:
            parser.error(f"unknown rules {sorted(unknown)}")
    if args.no_bp:
        settings["bp"] = False
    settings["float64"] = not args.no_float64
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import machine

    info = {"machine": machine(), "versions": versions()}
    pending = make_train_jobs(settings)
    if settings["float64"]:  # the pre-training unlocks the float64 jobs
        pending.append((1e9, pretrain_job, {"settings": settings}))
    print(
        f"continuous benchmark, preset {preset}: {len(pending)} jobs (more after "
        f"the float64 pre-training) on {settings['workers']} worker(s); load average "
        f"{info['machine']['load_average_at_start']}",
        flush=True,
    )
    results, f64 = [], {"gradients": [], "sweeps": []}
    with tempfile.TemporaryDirectory(prefix="holoode-jax-cache-") as cache_dir:
        with ProcessPoolExecutor(
            max_workers=settings["workers"],
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(cache_dir,),
        ) as pool:
            # Longest job first, at most one job per worker in flight, so that the
            # float64 jobs released by the pre-training jump the queue.
            running = set()
            while pending or running:
                pending.sort(key=lambda j: -j[0])
                while pending and len(running) < settings["workers"]:
                    _, fn, payload = pending.pop(0)
                    running.add(pool.submit(fn, payload))
                done = next(as_completed(running))
                running.remove(done)
                r = done.result()
                elapsed = time.perf_counter() - start
                if r["kind"] == "train":
                    results.append(r)
                    print(
                        f"[{elapsed:6.0f} s] train {r['label']:30s} "
                        f"σ={r['noise_std']:<5g} "
                        f"seed {r['seed']}: test acc {100 * r['test_accuracy']:5.1f}%  "
                        f"skipped {r['skipped_steps']:3d}  ({r['wall_s']:.0f} s)",
                        flush=True,
                    )
                elif r["kind"] == "pretrain":
                    f64.update(
                        network_sizes=(
                            64,
                            settings["grad_hidden"],
                            settings["grad_hidden"],
                            10,
                        ),
                        batch=settings["grad_batch"],
                        pretrain_steps=settings["pretrain_steps"],
                        pretrain_losses=r["losses"],
                        pretrain_skipped=r["skipped"],
                        pretrain_wall_s=r["wall_s"],
                    )
                    pending += make_float64_jobs(settings, r["leaves"])
                    losses = r["losses"] or [float("nan")]
                    print(
                        f"[{elapsed:6.0f} s] float64 pre-training ({len(r['losses'])} "
                        f"steps): batch loss {losses[0]:.3f} → {losses[-1]:.3f} "
                        f"({r['wall_s']:.0f} s)",
                        flush=True,
                    )
                elif r["kind"] == "grad":
                    f64["gradients"].append(r)
                    print(
                        f"[{elapsed:6.0f} s] gradient {r['rule']:30s} "
                        f"σ={r['noise_std']:<5g} "
                        f"cosine {r['cosine_mean']:.4f} ± {r['cosine_std']:.4f}  "
                        f"({r['wall_s']:.0f} s)",
                        flush=True,
                    )
                else:
                    f64["sweeps"].append(r)
                    print(
                        f"[{elapsed:6.0f} s] period sweep {r['network']} "
                        f"|β|={r['beta']:g} "
                        f"({r['wall_s']:.0f} s)",
                        flush=True,
                    )
    order = {label: i for i, (label, _) in enumerate(rule_specs(settings).values())}
    f64["gradients"].sort(key=lambda r: (r["noise_std"], order.get(r["rule"], 99)))
    sweep_order = [tuple(x) for x in settings["sweeps"]]
    f64["sweeps"].sort(key=lambda r: sweep_order.index((r["network"], r["beta"])))
    results.sort(key=lambda r: (r["label"], r["noise_std"], r["seed"]))
    wall = time.perf_counter() - start
    usage = [
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    ]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    try:
        load_end = os.getloadavg()
    except OSError:
        load_end = None

    table1, summary = training_table(results, settings)
    table2 = gradient_table(f64)
    table3 = sweep_tables(f64)
    slopes = {}
    for sw in f64["sweeps"]:
        for rich in (False, True):
            rows = [r for r in sw["periods"] if r["richardson"] == rich]
            # Short periods are pre-asymptotic: fit the three longest.
            rows = rows[-3:]  # the three longest periods
            if len(rows) >= 2:
                slopes[f"{sw['network']} β={sw['beta']:g} richardson={rich}"] = (
                    fitted_slope(
                        [r["period"] for r in rows], [r["rel_error"] for r in rows]
                    )
                )
    print()
    print(
        f"## Table 1 analogue: digits, HopfieldMLP(64, {settings['hidden']}, "
        f"{settings['hidden']}, 10), {settings['epochs']} epoch(s), batch "
        f"{settings['batch_size']}, lr {settings['learning_rate']}, "
        f"{len(settings['seeds'])} seed(s); final test accuracy"
    )
    print()
    print(table1)
    print()
    if settings["float64"]:
        print(
            f"## Gradient vs exact (float64, HopfieldMLP{tuple(f64['network_sizes'])}, "
            f"partly trained ({f64['pretrain_steps']} exact-gradient SGD steps), "
            f"batch {f64['batch']})"
        )
        print()
        print(table2)
        print()
        print("## ContinuousHEP error vs period (float64, noise-free)")
        print()
        print(table3)
        print()
        print(
            "fitted log-log slopes over the three longest periods: "
            + ", ".join(f"{k}: {v:.2f}" for k, v in slopes.items())
        )
    print(
        f"\nwall time: {wall:.0f} s; CPU time (this process and its workers): "
        f"{cpu:.0f} s; load average at start "
        f"{info['machine']['load_average_at_start']}, at end {load_end}"
    )

    record = {
        "benchmark": "continuous",
        "description": __doc__.split("\n\n")[0],
        "settings": settings,
        "noise": {
            "std": list(NOISE_LEVELS),
            "NeuronNoise_defaults": "duration=10, samples=10, dt=0.1 (not exposed by "
            "TrainConfig; kept)",
        },
        "training": {"runs": results, "summary": summary, "table_markdown": table1},
        "gradients": f64,
        "fitted_slopes_three_longest_periods": slopes,
        "tables_markdown": {"gradients": table2, "sweeps": table3},
        "wall_s": wall,
        "cpu_s": cpu,
        "load_average_at_end": load_end,
        **info,
    }
    with open(out / "continuous.json", "w") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
    written = ["continuous.json", "continuous_table.png"]
    if f64["sweeps"]:
        plot_periods(f64, out / "continuous_periods.png")
        written.append("continuous_periods.png")
    plot_table(summary, f64, settings, out / "continuous_table.png")
    print(f"wrote {', '.join(written)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
