"""Training configuration: one dataclass, named presets, config files, overrides."""

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

from ._rules import RULES


SOLVERS = ("auto", "fixed-point", "anderson", "root-find", "ode")
MODELS = ("mlp", "vgg")
ACTIVATIONS = ("default", "sigmoid", "hard-tanh")


def _bookkeeping(default=None, *, launch: bool = False):
    """A field that does not change the parameters' trajectory (where files go,
    how often they are written, the device count; `launch`: how this process
    joins a multi-process run): a resumed run may change it."""
    return dataclasses.field(
        default=default, metadata={"bookkeeping": True, "launch": launch}
    )


def _step_input(default):
    """A field that changes the trajectory but not the compiled step: it reaches
    the step as data or arrays."""
    return dataclasses.field(default=default, metadata={"step_input": True})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Build one from a preset
    (`holoode.PRESETS[name]`), a file (`holoode.load_config`) or directly; change
    fields with `dataclasses.replace` or `holoode.train(config, field=value)`.

    **Fields:**

    - `preset`: the name of the preset the run started from (informative).
    - `dataset`, `data_dir`: a name for `holoode.data.load` ("digits", "mnist",
      "fashion_mnist", "cifar10", "cifar100", "imagenet32") and its data folder.
    - `augment`: random crop with padding and horizontal flip (CIFAR).
    - `model`: "mlp" (`holoode.nn.HopfieldMLP` on flattened images, hidden widths
      `hidden`) or "vgg" (`holoode.nn.HopfieldConvNet` with `channels` and
      `padding`); `activation`: "default" (the model's own), "sigmoid" or
      "hard-tanh"; `gain`: scale of the initial weights.
    - `rule`: "hep" (`HolomorphicEP(beta, num_points)`), "continuous"
      (`ContinuousHEP(beta, period, num_periods)`), "ep" / "ep-sym"
      (`ClassicEP(beta, symmetric=...)`), "bp" (`ImplicitDifferentiation`), "bptt"
      (`BackpropThroughTime`) or "online" (`holoode.online_plasticity`: the batch's
      examples stream through one ODE, `num_periods` periods each, the weights
      evolving with rate `learning_rate / (period · num_periods)`, so that each
      example moves the weights by about one SGD step of size `learning_rate`; no
      momentum, weight decay or per-layer rates).
    - `noise_std`: neuron noise σ (`holoode.NeuronNoise`), 0 for none.
    - `solver`: the equilibrium solver: "auto" (Anderson acceleration, or the
      ODE for "continuous"), "fixed-point", "anderson", "root-find" or "ode";
      `solver_step_size` (fixed-point only), `solver_tol` (rtol = atol),
      `solver_max_steps`.
    - `epochs`, `batch_size`, `eval_batch_size`, `steps_per_epoch` (`None`: the
      whole training set; an integer caps the batches per epoch).
    - `optimizer`: "sgd" (with `momentum`, PyTorch's convention) or "adam";
      `learning_rate`; `layer_learning_rates`: one rate per layer (weights and
      bias of layer `l`, the readout last), replacing `learning_rate`;
      `weight_decay` (L2, added to the gradient); `schedule`: "constant" or
      "cosine" (to `min_learning_rate_ratio` × the rate at the last step).
    - `dtype`: "float32" or "float64" (parameters, data and equilibria).
    - `seed`: initial weights, data order, augmentation and noise.
    - `eval_every`: evaluate on the test split every this many epochs (and after
      the last); `checkpoint_every`: save a checkpoint every this many steps
      (0: at the end of every epoch), and always at the end.
    - `run_dir`: where metrics, the resolved config and checkpoints go (`None`:
      nothing is written).
    - `max_consecutive_skips`: stop with a diagnosis after this many skipped
      steps in a row.
    - `beta_backoff`: for "hep", when a step's circle leaves the analytic disc of
      some examples (`continuation_lost`) or their nudged equilibria are not
      reached, retry it with `|β|` halved for those examples only (each
      example's term of the gradient is exact for its own radius), up to this
      many halvings per example, before skipping the step (0: skip at once). A
      smaller circle gives a more exact gradient, with a weaker signal under
      noise; such steps are counted in the metrics as `reduced_beta_steps`.
    - `num_devices`: data-parallel over the first this many local devices
      (`None`: all of them; with several processes, of each process).
    - `distributed`: run as one of several processes sharing one global batch
      (`jax.distributed.initialize`, its cluster auto-detection for the unset
      values of `coordinator` ("HOST:PORT" of process 0), `num_processes` and
      `process_id`; giving any of these implies `distributed`). See "Training on
      several machines" in the documentation.
    """

    preset: str = _bookkeeping("digits-mlp")
    dataset: str = _step_input("digits")
    data_dir: str | None = _bookkeeping()
    augment: bool = _step_input(False)
    model: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    channels: tuple[int, ...] = (128, 256, 512, 512)
    padding: tuple[int, ...] | int | None = (1, 1, 1, 0)
    activation: str = "default"
    gain: float = 1.0
    rule: str = "hep"
    beta: float = _step_input(0.5)
    num_points: int = 4
    period: float = 50.0
    num_periods: int = 1
    noise_std: float = 0.0
    solver: str = "auto"
    solver_step_size: float = 0.5
    solver_tol: float = 1e-4
    solver_max_steps: int = 1000
    epochs: int = 30
    batch_size: int = 32
    eval_batch_size: int = _bookkeeping(256)
    steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    learning_rate: float = _step_input(0.1)
    layer_learning_rates: tuple[float, ...] | None = _step_input(None)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    min_learning_rate_ratio: float = 0.0
    dtype: str = "float32"
    seed: int = _step_input(0)
    eval_every: int = _bookkeeping(5)
    checkpoint_every: int = _bookkeeping(0)
    run_dir: str | None = _bookkeeping()
    max_consecutive_skips: int = _bookkeeping(20)
    beta_backoff: int = 3
    num_devices: int | None = _bookkeeping()
    distributed: bool = _bookkeeping(False, launch=True)
    coordinator: str | None = _bookkeeping(launch=True)
    num_processes: int | None = _bookkeeping(launch=True)
    process_id: int | None = _bookkeeping(launch=True)

    def __post_init__(self):
        _check(self)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (what `config.json` holds), without the fields of
        the other model kind (an MLP has no `channels`)."""
        out = dataclasses.asdict(self)
        for kind, names in _MODEL_FIELDS.items():
            if kind != self.model:
                for name in names:
                    out.pop(name, None)
        return out

    def fingerprint(self) -> str:
        """A hash of the fields that determine the trajectory of the parameters
        (not where files go, how often they are written, or the device count; nor
        the number of epochs under a constant schedule, so a finished run can be
        resumed for more epochs)."""
        keep = {k: v for k, v in self.to_dict().items() if k not in bookkeeping(self)}
        text = json.dumps(keep, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_FIELDS = dataclasses.fields(TrainConfig)
# How this process joins a multi-process run: not part of the run itself.
LAUNCH = tuple(f.name for f in _FIELDS if f.metadata.get("launch"))
_BOOKKEEPING = tuple(f.name for f in _FIELDS if f.metadata.get("bookkeeping"))
# Fields that a compiled training step does not see (`holoode.train` reuses one
# step for every configuration that differs only in them), with a placeholder.
NOT_IN_STEP = {
    f.name: f.default
    for f in _FIELDS
    if f.metadata.get("bookkeeping") or f.metadata.get("step_input")
}

# The fields that only one model kind uses.
_MODEL_FIELDS = {"mlp": ("hidden",), "vgg": ("channels", "padding")}


def bookkeeping(config: TrainConfig) -> tuple[str, ...]:
    """The fields that a resumed run may change."""
    return _BOOKKEEPING + (("epochs",) if config.schedule == "constant" else ())


def _choice(name, value, options):
    if value not in options:
        raise ValueError(
            f"TrainConfig({name}={value!r}) is not one of {list(options)}."
        )


def _check(c: TrainConfig) -> None:
    _choice("rule", c.rule, RULES)
    _choice("solver", c.solver, SOLVERS)
    _choice("model", c.model, MODELS)
    _choice("activation", c.activation, ACTIVATIONS)
    _choice("optimizer", c.optimizer, ("sgd", "adam"))
    _choice("schedule", c.schedule, ("constant", "cosine"))
    _choice("dtype", c.dtype, ("float32", "float64"))
    positive = ("epochs", "batch_size", "eval_batch_size", "solver_max_steps")
    for name in positive + ("num_points", "num_periods", "eval_every"):
        if int(getattr(c, name)) < 1:
            raise ValueError(
                f"TrainConfig({name}=...) must be ≥ 1, got {getattr(c, name)}."
            )
    for name in ("beta", "period", "learning_rate", "solver_tol", "solver_step_size"):
        if not getattr(c, name) > 0:
            raise ValueError(
                f"TrainConfig({name}=...) must be > 0, got {getattr(c, name)}."
            )
    if c.noise_std < 0 or c.weight_decay < 0 or not 0 <= c.momentum < 1:
        raise ValueError(
            "TrainConfig needs noise_std ≥ 0, weight_decay ≥ 0 and 0 ≤ momentum < 1; "
            f"got {c.noise_std}, {c.weight_decay}, {c.momentum}."
        )
    if c.noise_std > 0 and "noise_std" not in RULES[c.rule].fields:
        noisy = [name for name, spec in RULES.items() if "noise_std" in spec.fields]
        raise ValueError(
            f"TrainConfig(rule={c.rule!r}) has no neuron-noise option: set "
            f"noise_std=0, or use one of the rules {noisy}."
        )
    if c.steps_per_epoch is not None and c.steps_per_epoch < 1:
        raise ValueError(
            "TrainConfig needs steps_per_epoch ≥ 1 (or None for the whole training "
            f"set), got {c.steps_per_epoch}."
        )
    if c.beta_backoff < 0:
        raise ValueError(f"TrainConfig needs beta_backoff ≥ 0, got {c.beta_backoff}.")
    if c.checkpoint_every < 0 or c.max_consecutive_skips < 1:
        raise ValueError(
            "TrainConfig needs checkpoint_every ≥ 0 and max_consecutive_skips ≥ 1."
        )


PRESETS: dict[str, TrainConfig] = {
    # The `holoode train` default: minutes on a laptop CPU, ≥ 95% test accuracy.
    "digits-mlp": TrainConfig(),
    # Laborieux & Zenke (2022), MNIST: MLP 784-256-256-10, batch 20, lr 0.05,
    # 50 epochs, hEP with N = 10 points at |β| = 0.4; plain SGD (no momentum is
    # stated for this schedule).
    "mnist-mlp": TrainConfig(
        preset="mnist-mlp",
        dataset="mnist",
        hidden=(256, 256),
        beta=0.4,
        num_points=10,
        epochs=50,
        batch_size=20,
        learning_rate=0.05,
        momentum=0.0,
        eval_every=1,
    ),
    # VGG-like 4 conv layers with softmax pooling, hEP with N = 2 at |β| = 1 (the
    # paper's setting), augmentation. The optimiser (per-layer rates, momentum
    # 0.9, weight decay 3e-4, cosine schedule, batch 128, 120 epochs) follows the
    # CIFAR-10 convnet runs of Laborieux et al. (2021) that the paper builds on;
    # these values have not been checked against the paper's own configuration.
    "cifar10-vgg": TrainConfig(
        preset="cifar10-vgg",
        dataset="cifar10",
        augment=True,
        model="vgg",
        beta=1.0,
        num_points=2,
        epochs=120,
        batch_size=128,
        learning_rate=0.25,
        layer_learning_rates=(0.25, 0.15, 0.1, 0.08, 0.05),
        momentum=0.9,
        weight_decay=3e-4,
        schedule="cosine",
        min_learning_rate_ratio=1e-4,
        eval_every=1,
        checkpoint_every=1000,
    ),
}
PRESETS["cifar100-vgg"] = dataclasses.replace(
    PRESETS["cifar10-vgg"], preset="cifar100-vgg", dataset="cifar100"
)
PRESETS["imagenet32-vgg"] = dataclasses.replace(
    PRESETS["cifar10-vgg"],
    preset="imagenet32-vgg",
    dataset="imagenet32",
    epochs=90,
    batch_size=256,
)


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _unknown(keys, where: str) -> None:
    valid = _fields()
    bad = [k for k in keys if k not in valid]
    if bad:
        raise ValueError(
            f"{where}: unknown key(s) {bad}. Valid keys: {', '.join(valid)}."
        )


def _coerce(name: str, value):
    """Bring a value from a file or the command line to the field's type; a value
    that does not convert raises `ValueError` naming the field."""
    try:
        return _convert(name, value)
    except (TypeError, ValueError):
        kind = _fields()[name].type
        kind = kind.__name__ if isinstance(kind, type) else str(kind)
        raise ValueError(
            f"{name} = {value!r} is not a valid value for this field (type {kind}); "
            f"e.g. `--set {name}={_example(name)}`."
        ) from None


def _example(name: str) -> str:
    default = _fields()[name].default
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default).lower() if isinstance(default, bool) else str(default)


def _convert(name: str, value):
    default = _fields()[name].default
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("none", "null"):
        return None
    if isinstance(value, str) and name == "padding" and "," not in value:
        return int(value)
    if name in ("hidden", "channels", "layer_learning_rates") or (
        name == "padding" and isinstance(value, (list, tuple, str))
    ):
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v]
        cast = float if name == "layer_learning_rates" else int
        return tuple(cast(v) for v in value)
    if isinstance(value, str) and isinstance(default, bool):
        if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(value)
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, float) or name in ("learning_rate",):
        return float(value)
    if isinstance(default, int) or name in ("steps_per_epoch", "num_devices"):
        return int(value)
    if name in ("num_processes", "process_id"):
        return int(value)
    return value


def resolve(config: TrainConfig | str | None = None, **overrides) -> TrainConfig:
    """A config from a `TrainConfig`, a preset name or `None` (the default
    preset; a `preset=` override picks another), with field overrides applied."""
    _unknown(overrides, "holoode.train")
    if config is None:
        config = overrides.get("preset", "digits-mlp")
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(
                f"Unknown preset {config!r}; choose one of {sorted(PRESETS)}."
            )
        config = PRESETS[config]
    if not isinstance(config, TrainConfig):
        raise ValueError(
            "holoode.train(config=...) takes a holoode.TrainConfig, a preset name "
            f"or None, got {type(config).__name__}."
        )
    values = {k: _coerce(k, v) for k, v in overrides.items()}
    return dataclasses.replace(config, **values)


def parse_overrides(items) -> dict[str, Any]:
    """`["key=value", ...]` (the command line's `--set`) as a dict of fields."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}.")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        _unknown([key], f"--set {item}")
        out[key] = _coerce(key, value.strip())
    return out


def load_config(path) -> TrainConfig:
    """A `TrainConfig` from a TOML (`.toml`) or YAML (`.yaml`/`.yml`, needs
    PyYAML) file of `key = value` pairs. A `preset` key starts from that preset;
    the other keys override its fields. An unknown key raises `ValueError`
    listing the valid ones."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib

        with path.open("rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(
                    f"Config file {str(path)!r} is not valid TOML: {e}."
                ) from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError(
                f"Reading {path} needs PyYAML: `pip install pyyaml`, or write the "
                "config as TOML."
            ) from None
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(
                f"Config file {str(path)!r} is not valid YAML: {e}"
            ) from None
    else:
        raise ValueError(f"Config file {str(path)!r}: use a .toml, .yaml or .yml file.")
    if not isinstance(data, dict):
        raise ValueError(f"Config file {str(path)!r} must hold key = value pairs.")
    _unknown(data, f"Config file {str(path)!r}")
    preset = data.pop("preset", "digits-mlp")
    return resolve(preset, **data)
