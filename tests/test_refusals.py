"""What holoode refuses, and why: each case asserts the clear error or the right
value. The cases that once returned a wrong result reported as success come
first."""

import errno
import json
import os
import pathlib
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
import numpy as np
import pytest

import holoode as ho
from holoode._cli import main
from holoode._equilibrium.stable import _top_eigenpair
from holoode._gradient import _raise_on_failure
from holoode._learning.base import describe
from holoode._solution import Info
from holoode._training import _checkpoint
from holoode._training._config import resolve
from holoode._training._metrics import MetricsLog, read_metrics
from holoode._training._plot import _figure

from .helpers import data, mlp, QuarticHopfield


jax.config.update("jax_enable_x64", True)

EXACT = ho.ImplicitDifferentiation(linear_solver=lx.LU())


# --- Wrong results that were reported as success ------------------------------


@pytest.mark.parametrize("label", [7, -1])
def test_label_out_of_range_is_refused_with_the_label(label):
    model, (x, y) = mlp(), data()
    with pytest.raises(
        ValueError, match=rf"label y\[2\] = {label}, but the readout has 3 classes"
    ):
        ho.gradient(EXACT, model, x, y.at[2].set(label), cost=ho.CrossEntropy())
    # The cost itself has no value for such a label (not another class's value).
    logits = jnp.array([0.1, 0.2, 0.3])
    value, grad = jax.value_and_grad(ho.CrossEntropy())(logits, label)
    assert np.isnan(value) and np.all(np.isnan(grad))


def test_traced_label_out_of_range_is_flagged():
    model = QuarticHopfield(key=jr.key(0))
    x, y = data()

    @eqx.filter_jit
    def step(m, x, y):
        return ho.gradient(
            EXACT, m, x, y, cost=ho.CrossEntropy(), solver=ho.RootFind(), throw=False
        )

    grads, info = step(model, x, y.at[0].set(7))
    assert info.result == ho.RESULTS.invalid_input
    assert all(np.all(np.isnan(g)) for g in jtu.tree_leaves(grads))
    assert "invalid_input" in str(info)
    grads, info = step(model, x, y)
    assert info.result == ho.RESULTS.successful


class VectorEnergy(QuarticHopfield):
    def energy(self, u, x):  # pyright: ignore
        return jnp.reshape(super().energy(u, x), (1,))


class VectorPrimitive(ho.nn.HopfieldMLP):
    def primitive(self, u, x):  # pyright: ignore
        return jnp.reshape(super().primitive(u, x), (1,))


def test_energy_and_primitive_must_be_scalars():
    x, y = data(labels=False)
    with pytest.raises(ValueError, match=r"VectorEnergy.energy\(u, x\) must return a"):
        ho.gradient(EXACT, VectorEnergy(key=jr.key(0)), x, y, cost=ho.SquaredError())
    # A trailing axis of size 1 on `x` turns the energy into a vector, too.
    with pytest.raises(ValueError, match=r"energy\(u, x\) must return a scalar"):
        ho.gradient(
            EXACT,
            QuarticHopfield(key=jr.key(0)),
            x[..., None],
            y,
            cost=ho.SquaredError(),
        )
    model = VectorPrimitive((4, 7, 3), key=jr.key(0), dtype=jnp.float64)
    x, y = data()
    with pytest.raises(ValueError, match=r"primitive\(u, x\) must return a scalar"):
        ho.gradient(EXACT, model, x, y, cost=ho.CrossEntropy())


@pytest.mark.parametrize(
    "rule",
    [
        ho.HolomorphicEP(0.1, 4),
        ho.ClassicEP(0.1),
        ho.ContinuousHEP(0.1),
        ho.ImplicitDifferentiation(),
        ho.BackpropThroughTime(),
    ],
    ids=lambda r: type(r).__name__,
)
def test_differentiating_a_gradient_raises(rule):
    model, (x, y) = mlp(), data()
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def total(p, x):
        grads, _ = ho.gradient(
            rule, eqx.combine(p, static), x, y, cost=ho.CrossEntropy()
        )
        return sum(jnp.sum(g) for g in jtu.tree_leaves(grads))

    with pytest.raises(ValueError, match="cannot be differentiated"):
        jax.grad(total)(params, x)
    with pytest.raises(ValueError, match="cannot be differentiated"):
        jax.jvp(lambda x: total(params, x), (x,), (jnp.ones_like(x),))


def _save(path, step):
    config = resolve(hidden=(4,))
    model = {"w": jnp.arange(6.0).reshape(2, 3)}
    position = {"epoch": 3, "batch": 1, "step": step, "skips": {}, "consecutive": 0,
                "loss_sum": 0.0, "loss_count": 0}  # fmt: skip
    _checkpoint.save(
        path, model=model, opt_state=(), key=jr.key(0), position=position,
        config=config,
    )  # fmt: skip
    return dict(model=model, opt_state=(), key=jr.key(0), config=config)


def test_one_bit_flip_in_the_checkpoint_header_is_caught(tmp_path):
    path = tmp_path / "checkpoint.eqx"
    like = _save(path, 358)
    assert _checkpoint.load(path, **like)[3]["step"] == 358
    raw = path.read_bytes()
    assert raw.count(b'"step": 358') == 1
    flipped = raw.replace(b'"step": 358', b'"step": 258')  # '3' → '2': one bit
    assert sum(bin(a ^ b).count("1") for a, b in zip(raw, flipped)) == 1
    path.write_bytes(flipped)
    with pytest.raises(ho.CheckpointError, match="header .* does not match its"):
        _checkpoint.load(path, **like)


# --- Errors that must name the real cause -------------------------------------


def test_nonfinite_inputs_and_parameters_are_named():
    model, (x, y), cost = mlp(), data(), ho.CrossEntropy()
    with pytest.raises(ValueError, match=r"`x` contains NaN or inf \(at x\[2, 1\]"):
        ho.gradient(EXACT, model, x.at[2, 1].set(jnp.nan), y, cost=cost)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    (path, leaf), *_ = jtu.tree_flatten_with_path(params)[0]
    leaves, treedef = jtu.tree_flatten(params)
    leaves[0] = leaves[0].at[0].set(jnp.inf)
    bad = eqx.combine(jtu.tree_unflatten(treedef, leaves), static)
    name = re.escape(f"model{jtu.keystr(path)}")
    with pytest.raises(ValueError, match=rf"parameter {name} contains NaN or inf"):
        ho.gradient(EXACT, bad, x, y, cost=cost)


def _failure(rule, solver, result):
    info = Info(
        loss=jnp.array(1.0),
        num_steps=jnp.zeros((5, 1), int),
        residual=jnp.zeros((5, 1)),
        reached=jnp.zeros((5, 1), bool),
        error_estimate=jnp.array(jnp.nan),
        radius_ratio=jnp.full((5,), jnp.nan),
        result=result,
    )
    with pytest.raises(Exception) as err:
        jax.block_until_ready(_raise_on_failure(jnp.zeros(3), info, rule, solver))
    text = str(err.value)  # also holds the stack, with this file's source lines
    return text[text.index("holoode.gradient(") :].split("\n")[0]


def test_advice_never_suggests_what_is_in_use():
    hep, stuck = ho.HolomorphicEP(0.1, 4), ho.RESULTS.max_steps_reached
    message = _failure(hep, ho.RootFind(), stuck)
    assert "holoode.RootFind()" not in message
    assert "check_holomorphic" in message
    message = _failure(hep, ho.FixedPointIteration(), stuck)
    assert "holoode.RootFind()" in message
    message = _failure(ho.ImplicitDifferentiation(), ho.RootFind(), stuck)
    assert "check_holomorphic" not in message and "holoode.RootFind()" not in message


def test_wrong_feature_size_and_empty_batch_name_the_shapes():
    model = QuarticHopfield(key=jr.key(0))
    x, y = data(labels=False)
    with pytest.raises(ValueError, match=r"per-example shape \(3,\).*dot_general"):
        ho.gradient(EXACT, model, x[:, :3], y, cost=ho.SquaredError())
    with pytest.raises(ValueError, match=r"batch is empty \(`x` has shape \(0, 4\)\)"):
        ho.gradient(EXACT, model, x[:0], y[:0], cost=ho.SquaredError())


def test_rule_fields_are_validated_like_the_others():
    for value in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ClassicEP\\(beta=...\\) needs a finite"):
            ho.ClassicEP(value)
        with pytest.raises(ValueError, match="ContinuousHEP\\(beta=...\\).*finite"):
            ho.ContinuousHEP(value)
        with pytest.raises(ValueError, match="ContinuousHEP\\(period=...\\).*finite"):
            ho.ContinuousHEP(0.1, period=value)
    rule = ho.ContinuousHEP(0.1, num_periods=np.int64(2), warmup=np.float64(0.5))
    assert type(rule.num_periods) is int and type(rule.warmup) is float
    assert ho.ClassicEP(0.1, symmetric=np.bool_(True)).symmetric is True
    with pytest.raises(ValueError, match="num_periods"):
        ho.ContinuousHEP(0.1, num_periods=np.float64(1.5))
    with pytest.raises(ValueError, match="max_error_estimate"):
        ho.ContinuousHEP(0.1, max_error_estimate=-1.0)


def test_cli_names_the_field_and_the_file(tmp_path, capsys):
    assert main(["train", "--set", "epochs=abc"]) == 2
    err = capsys.readouterr().err
    assert "epochs = 'abc' is not a valid value" in err and "--set epochs=" in err
    config = tmp_path / "broken.toml"
    config.write_text("epochs = \n")
    assert main(["train", "--config", str(config)]) == 2
    assert f"{str(config)!r} is not valid TOML" in capsys.readouterr().err


def test_truncated_metrics_line_is_dropped_on_resume(tmp_path, capsys):
    lines = [json.dumps({"step": 4 * e, "epoch": e, "train_loss": 1.0}) for e in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 12, "ep')
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2]
    assert "dropped a partial last line" in capsys.readouterr().err
    log = MetricsLog(tmp_path, resume_step=8, resume_epoch=2)
    assert [r["epoch"] for r in log.records] == [1, 2]
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines
    (tmp_path / "metrics.jsonl").write_text("{oops\n" + "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="metrics.jsonl' line 1 is not a JSON record"):
        read_metrics(tmp_path)


def test_full_or_read_only_run_directory_gives_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.eqx"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="Cannot write the checkpoint .*No space left"):
        _save(path, 1)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    log = MetricsLog(tmp_path)
    monkeypatch.setattr(os, "replace", lambda *a: full(None))
    with pytest.raises(OSError, match="Cannot write .*metrics"):
        log.append({"epoch": 1})
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_reports_an_unwritable_run_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = blocker / "run"  # a folder inside a file: cannot be created, even by root
    assert main(["train", "--run-dir", str(run), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Fix: make the run directory writable" in err and "Traceback" not in err


def test_check_holomorphic_with_a_batch_says_to_pass_one_example():
    x, y = data()
    with pytest.raises(ValueError, match=r"pass `x\[0\]`"):
        ho.check_holomorphic(mlp(), x)
    with pytest.raises(ValueError, match=r"pass `x\[0\]`"):
        ho.check_holomorphic(QuarticHopfield(key=jr.key(0)), x)


# --- What a user sees ---------------------------------------------------------


def test_info_and_rules_print_values():
    info = Info(
        loss=jnp.array(0.6931),
        num_steps=jnp.array([[12, 30]]),
        residual=jnp.array([[1e-12, 3e-11]]),
        reached=jnp.array([[True, True]]),
        error_estimate=jnp.array(2e-5),
        radius_ratio=jnp.array([0.25]),
        result=ho.RESULTS.successful,
    )
    text = str(info)
    for expected in ("0.6931", "max 30", "3e-11", "2 of 2", "2e-05", "0.25",
                     "successful"):  # fmt: skip
        assert expected in text, text
    assert "f64[" not in text and "RESULTS<" not in text
    assert (
        str(ho.ClassicEP(0.25, symmetric=True))
        == "ClassicEP(beta=0.25, symmetric=True)"
    )
    assert describe(ho.HolomorphicEP(0.5, 6)) == "HolomorphicEP(beta=0.5, num_points=6)"
    assert "weak_" not in describe(ho.ContinuousHEP(0.1, period=50.0))


def test_plot_axes_of_a_one_epoch_run():
    record = dict(epoch=1, train_loss=0.9, test_loss=0.8, test_accuracy=0.95)
    records = [dict(record, test_top5=1.0, skipped_steps=0)]
    ax_loss, ax_acc, ax_skip = _figure(records, "run").axes
    for ax in (ax_loss, ax_acc, ax_skip):
        low, high = ax.get_xlim()
        assert high - low >= 2
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks)
    low, high = ax_acc.get_ylim()
    assert high - low >= 5 and low <= 95 <= high
    flat = [dict(record, skipped_steps=0), dict(record, epoch=2, skipped_steps=0)]
    _, ax_acc, _ = _figure(flat, "run").axes
    low, high = ax_acc.get_ylim()
    assert high - low >= 10 and low <= 95 <= high
    assert ax_skip.get_ylim()[0] == 0 and ax_skip.get_ylim()[1] >= 1


def test_config_json_holds_the_fields_of_its_model_kind():
    mlp_config = resolve(hidden=(16,))
    saved = json.loads(json.dumps(mlp_config.to_dict()))
    assert "hidden" in saved and "channels" not in saved and "padding" not in saved
    assert "hidden" not in resolve("cifar10-vgg").to_dict()
    # `holoode train --resume` rebuilds the config from config.json alone.
    assert resolve(None, **saved).fingerprint() == mlp_config.fingerprint()
    assert resolve(mlp_config, channels=(8,)).fingerprint() == mlp_config.fingerprint()


def test_readme_and_docs_agree_on_the_python_version():
    root = pathlib.Path(__file__).parent.parent
    for name in ("README.md", "docs/index.md"):
        assert "Python ≥ 3.10 (tested with 3.11)" in (root / name).read_text(), name


class Quadratic(ho.AbstractEnergyModel):
    """`E = ½ uᵀ M u − u·(x + b)`: a minimum if `M` is positive definite, else a
    saddle or a maximum; readout `u`."""

    M: jax.Array
    b: jax.Array

    def init_state(self, x):
        return jnp.zeros_like(self.b)

    def energy(self, u, x):
        return 0.5 * u @ self.M @ u - u @ (x + self.b)

    def readout(self, u, x):
        return u


class Bistable(ho.AbstractPrimitiveModel):
    """Two tanh units coupled by `w`: `u = 0` is a fixed point, stable for
    `|w| < 1` and a saddle of the dynamics for `|w| > 1`."""

    w: jax.Array

    def init_state(self, x):
        return jnp.zeros(2, x.dtype)

    def primitive(self, u, x):
        return self.w * u[0] * u[1] + u @ x

    def activation(self, a):
        return jnp.tanh(a)

    def readout(self, u, x):
        return u


def _spectrum(eigenvalues, key):
    q, _ = jnp.linalg.qr(jr.normal(key, (len(eigenvalues),) * 2, jnp.float64))
    return q @ jnp.diag(jnp.asarray(eigenvalues, jnp.float64)) @ q.T


@pytest.mark.parametrize(
    "rule", [ho.ImplicitDifferentiation(), ho.HolomorphicEP(0.1, 4), ho.ClassicEP(0.1)],
    ids=lambda r: type(r).__name__,
)  # fmt: skip
@pytest.mark.parametrize("solver", [ho.RootFind(), ho.AndersonAcceleration()])
def test_a_maximum_of_the_energy_is_refused(rule, solver):
    # E = −½|u|² − u·x is unbounded below; root finders converge to its maximum.
    n = 5
    model = Quadratic(-jnp.eye(n), jnp.zeros(n))
    x = jr.normal(jr.key(1), (3, n), jnp.float64)
    y = jnp.zeros((3, n))
    _, info = ho.gradient(
        rule, model, x, y, cost=ho.SquaredError(), solver=solver, throw=False
    )
    assert info.result == ho.RESULTS.unstable_equilibrium
    assert not bool(jnp.any(info.reached[:, 0]))
    with pytest.raises(Exception, match="not stable"):
        ho.gradient(rule, model, x, y, cost=ho.SquaredError(), solver=solver)


@pytest.mark.parametrize("smallest", [-0.5, -0.05, 0.05, 0.5])
def test_stability_check_agrees_with_the_dense_spectrum(smallest):
    # A saddle (one negative curvature among curvatures up to 3) is refused; a
    # minimum is not. The reference is the dense eigendecomposition.
    n = 12
    eigenvalues = jnp.concatenate(
        [jnp.array([smallest]), jnp.linspace(0.3, 3.0, n - 1)]
    )
    model = Quadratic(_spectrum(eigenvalues, jr.key(2)), jnp.zeros(n))
    x = jr.normal(jr.key(3), (2, n), jnp.float64)
    _, info = ho.gradient(
        ho.ImplicitDifferentiation(), model, x, jnp.zeros((2, n)),
        cost=ho.SquaredError(), solver=ho.RootFind(), throw=False,
    )  # fmt: skip
    minimum = bool(jnp.linalg.eigvalsh(model.M)[0] > 0)
    expected = ho.RESULTS.successful if minimum else ho.RESULTS.unstable_equilibrium
    assert info.result == expected


@pytest.mark.parametrize("k", [1, 2, 7, 24])
def test_top_eigenpair_of_a_tridiagonal_matches_lapack(k):
    # The stability check's own eigen-solver (repeated squaring, no LAPACK)
    # against LAPACK's dense one, on random matrices, some reducible.
    rng = np.random.default_rng(k)
    for trial in range(20):
        d, e = rng.normal(size=k), rng.normal(size=k - 1)
        if trial % 4 == 0 and k > 2:
            e[k // 2] = 0.0  # two blocks
        t = np.diag(d) + np.diag(e, 1) + np.diag(e, -1)
        values = np.linalg.eigvalsh(t)
        top, spread, v = _top_eigenpair(jnp.asarray(d), jnp.asarray(e))
        v = np.asarray(v)
        assert abs(float(top) - values[-1]) < 1e-12
        assert abs(float(spread) - np.abs(values).max()) < 1e-12
        assert abs(np.linalg.norm(v) - 1) < 1e-12
        assert np.linalg.norm(t @ v - values[-1] * v) < 1e-10


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_a_saddle_of_the_rate_dynamics_is_left_for_a_stable_state(w):
    # Anderson converges to u = 0 at once; for |w| > 1 that is a saddle, and the
    # free phase must continue to one of the two stable states u = ±(s, s),
    # s = tanh(w s), where the Jacobian's eigenvalues are negative.
    model = Bistable(jnp.asarray(w, jnp.float64))
    x, y = jnp.zeros((2, 2)), jnp.zeros((2, 2))
    free = ho.solve_free(
        ho.AndersonAcceleration(), model, x, y, ho.SquaredError(), jnp.zeros((2, 2))
    )
    assert bool(jnp.all(free.result._value == ho.RESULTS.successful._value))
    for u in free.value:
        field = lambda v: model.vector_field(v, x[0], y[0], 0.0, ho.SquaredError())  # noqa: E731
        assert float(jnp.max(jnp.linalg.eigvals(jax.jacfwd(field)(u)).real)) < 0
        if w > 1:
            assert float(jnp.min(jnp.abs(u))) > 0.5
        else:
            assert float(jnp.max(jnp.abs(u))) < 1e-8
