"""Sweep spec: YAML -> validated :class:`SweepSpec` -> expanded, validated trials.

Everything here runs before Ray starts and imports neither Ray nor torch, so a typo in a
sweep file, an axis path the trainer does not know or a value its config rejects fails in
a second with the file, the key and the fix -- not after the cluster has spun up.

Order in which a trial's config is assembled (later wins):
  base YAML  ->  spec ``overrides``  ->  ``base_overrides[<base file stem>]``  ->
  the trial's axis values  ->  ``seed``  ->
  sweep-owned keys (``out_dir`` = the trial's folder under storage, ``name``).
An axis value replaces the whole subtree at its key (``key: masking`` with a value
``{strategy: tf, num_blocks: 3}`` is the full masking section), so one strategy's
parameters never leak into another's.

Control trials (``control: true``, the default): one extra trial per seed with the first
axis combination's config, which skips pretraining and evaluates the encoder as
initialised (the trainer seeds right before building the model, so its weights depend on
the seed alone). They carry no axis labels; MLflow tags them ``ajepa.role=control`` and
``analysis/`` shows them as the table's control row.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import random
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ajepa.config import (
    ConfigError, TrainConfig, apply_overrides, build_config, default_tracking_uri, dump_config, read_yaml,
)

DEFAULT_BASE = "experiments/tiny.yaml"
DEFAULT_STORAGE = "runs/sweeps"
SWEEP_OWNED_KEYS = ("out_dir", "name", "seed")
TRIAL, CONTROL = "trial", "control"          # Trial.kind; also the MLflow ajepa.role of its run
CONTROL_LABEL = "control: initialisation"    # how tables and run names call the control trials


class SpecError(ConfigError):
    """A sweep file that cannot run; the message names the file, the key and the fix."""


# --------------------------------------------------------------------------- YAML


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (PyYAML 1.1 wants ``1.0e-4``)."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_spec_yaml(path: Path) -> dict:
    if not path.is_file():
        raise SpecError(f"sweep file not found: {path}")
    try:
        tree = yaml.load(path.read_text(), Loader=_SpecLoader) or {}
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise SpecError(f"{path}: the top level must be a mapping (name, base, axes, ...)")
    return tree


# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AxisValue(_Strict):
    """One value of an axis: ``{label, value}`` for a keyed axis, ``{label, set}`` for a linked one."""

    label: str | None = None
    value: Any = None
    set: dict[str, Any] | None = None

    @field_validator("label", mode="before")
    @classmethod
    def _label_text(cls, v: Any) -> Any:
        return None if v is None else str(v)


class Distribution(_Strict):
    """A sampled axis (random / Optuna search only). ``randint`` includes both ends."""

    kind: Literal["uniform", "loguniform", "randint"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Distribution":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
        if self.kind == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        if self.kind == "randint" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("randint needs integer low and high")
        return self

    def sample(self, rng: random.Random) -> float | int:
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.randint(int(self.low), int(self.high))

    def corners(self) -> list[float | int]:
        if self.kind == "randint":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class Axis(_Strict):
    """One ablation axis.

    ``key`` + ``values``: each value sets that dotted config path (plain values are
    labelled ``str(value)``; ``{label, value}`` gives a display label). No ``key`` and
    values ``{label, set: {dotted: value, ...}}``: a linked axis setting several keys
    together. ``key`` + ``distribution``: sampled by random / Optuna search.
    """

    name: str = Field(min_length=1)
    key: str | None = None
    values: list[Any] | None = None
    distribution: Distribution | None = None

    @model_validator(mode="after")
    def _shape(self) -> "Axis":
        if (self.values is None) == (self.distribution is None):
            raise ValueError(f"axis {self.name!r}: give exactly one of 'values' or 'distribution'")
        if self.distribution is not None and self.key is None:
            raise ValueError(f"axis {self.name!r}: a distribution needs a 'key' (the config path it samples)")
        if self.values is not None:
            if not self.values:
                raise ValueError(f"axis {self.name!r}: 'values' is empty")
            labels = [v.label for v in self.items()]
            duplicated = sorted({label for label in labels if labels.count(label) > 1})
            if duplicated:
                raise ValueError(f"axis {self.name!r}: duplicate value labels {duplicated}; give each value its own label")
        return self

    def items(self) -> list["AxisItem"]:
        """The values as (label, assignments) pairs, validating each value's form."""
        out = []
        for i, raw in enumerate(self.values or []):
            where = f"axis {self.name!r} values[{i}]"
            if isinstance(raw, dict) and ("value" in raw or "set" in raw):
                try:
                    item = AxisValue.model_validate(raw)
                except ValidationError as err:
                    raise ValueError(f"{where}: {_first_error(err)}") from None
                if item.set is not None and "value" in raw:
                    raise ValueError(f"{where}: give either 'value' or 'set', not both")
                if item.set is not None:
                    if self.key is not None:
                        raise ValueError(f"{where}: 'set' is for linked axes without a 'key'; "
                                         f"drop the axis key or write {{label, value}}")
                    if item.label is None:
                        raise ValueError(f"{where}: a linked value needs a 'label' (shown in tables)")
                    if not item.set:
                        raise ValueError(f"{where}: 'set' is empty")
                    out.append(AxisItem(item.label, dict(item.set)))
                    continue
                if self.key is None:
                    raise ValueError(f"{where}: this axis has no 'key', so each value must be "
                                     f"{{label, set: {{dotted.key: value}}}}")
                label = item.label if item.label is not None else format_label(item.value)
                out.append(AxisItem(label, {self.key: item.value}))
            elif isinstance(raw, dict):
                raise ValueError(
                    f"{where}: a mapping must be {{label, value}} or {{label, set}}; "
                    f"to use a mapping as the value write {{label: ..., value: {{...}}}}"
                )
            else:
                if self.key is None:
                    raise ValueError(f"{where}: plain value {raw!r} needs an axis 'key' "
                                     f"(or write {{label, set: {{...}}}})")
                out.append(AxisItem(format_label(raw), {self.key: raw}))
        return out

    def keys(self) -> list[str]:
        if self.key is not None:
            return [self.key]
        return sorted({k for item in self.items() for k in item.assignments})

    def labels(self) -> list[str]:
        return [item.label for item in self.items()] if self.values is not None else []


@dataclass(frozen=True)
class AxisItem:
    label: str
    assignments: dict[str, Any]


class SearchSpec(_Strict):
    kind: Literal["grid", "random", "optuna"] = "grid"
    metric: str | None = Field(None, description="e.g. eval/synthetic/acc; needed by optuna and asha")
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(1, ge=1, description="random/optuna: sampled configurations (each x every seed)")
    seed: int = Field(0, description="seed of the random / Optuna sampler")


class SchedulerSpec(_Strict):
    kind: Literal["none", "asha"] = "none"
    metric: str | None = Field(None, description="defaults to search.metric; must be reported during training")
    mode: Literal["max", "min"] | None = None
    grace_period: int = Field(10, ge=1, description="optimizer steps before a trial may be stopped")
    reduction_factor: float = Field(3.0, gt=1)
    max_t: int | None = Field(None, ge=1, description="optimizer steps; default: the trials' length")
    brackets: int = Field(1, ge=1)


class ResourcesSpec(_Strict):
    cpu: float = Field(1.0, gt=0, description="CPUs per trial (per worker when workers > 1)")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial (per worker); fractions below 1 share a GPU")
    workers: int = Field(1, ge=1, description="> 1: the trial runs as Ray Train TorchTrainer DDP")

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"a fractional GPU share must be below 1, got {v}")
        return v


class TrackingSpec(_Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite under storage")
    experiment: str | None = Field(None, description="MLflow experiment; default: the sweep name")
    log_encoder: bool = Field(False, description="log the final target encoder as an artifact")


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    table: str | None = None
    base: str = DEFAULT_BASE
    overrides: dict[str, Any] = Field(default_factory=dict)
    base_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per base file stem (e.g. tiny): overrides applied only with that base, after "
        "'overrides' -- laptop-sized run lengths that must not shrink a --base paper_vitb run",
    )
    axes: list[Axis] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0, description="retries of a failing trial (from its checkpoint)")
    tracking: TrackingSpec = TrackingSpec()
    storage: str = DEFAULT_STORAGE
    metrics: list[str] = Field(default_factory=list)
    control: bool = Field(
        True, description="one extra trial per seed: the first axis combination's encoder at initialisation "
        "(no pretraining), evaluated like the trials; the tables' control row (grid/random search only)",
    )

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        names = [a.name for a in self.axes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"axes: duplicate axis names {dup}")
        owner: dict[str, str] = {}
        for axis in self.axes:
            for key in axis.keys():
                for other_key, other in owner.items():
                    if other != axis.name and (key == other_key or key.startswith(other_key + ".")
                                               or other_key.startswith(key + ".")):
                        raise ValueError(f"axes {other!r} and {axis.name!r} both set {min(key, other_key, key=len)!r}; "
                                         "merge them into one linked axis")
                owner[key] = axis.name
                if key in SWEEP_OWNED_KEYS:
                    raise ValueError(f"axis {axis.name!r}: {key!r} is set by the sweep itself"
                                     + (" (use 'seeds')" if key == "seed" else ""))
        sampled = [a.name for a in self.axes if a.distribution is not None]
        if sampled and self.search.kind == "grid":
            raise ValueError(f"axes {sampled} are distributions: set search.kind to random or optuna, "
                             "or give them a list of values")
        if self.search.kind == "grid" and self.search.num_samples != 1:
            raise ValueError("search.num_samples is for random/optuna; a grid repeats through 'seeds'")
        if self.search.kind == "optuna" and not self.search.metric:
            raise ValueError("search.kind=optuna needs search.metric (e.g. eval/synthetic/acc)")
        if self.scheduler.kind == "asha" and not (self.scheduler.metric or self.search.metric):
            raise ValueError("scheduler.kind=asha needs scheduler.metric (or search.metric), e.g. train/loss")
        if self.resources.workers > 1 and self.scheduler.kind != "none":
            raise ValueError("resources.workers > 1 (DDP) reports only final metrics: use scheduler.kind=none")
        for metric in [self.search.metric, self.scheduler.metric, *self.metrics]:
            if metric and not metric.startswith(("train/", "eval/")):
                raise ValueError(f"metric {metric!r} must be a train/... or eval/... name (docs/ARCHITECTURE.md)")
        return self

    @property
    def scheduler_metric(self) -> str | None:
        return self.scheduler.metric or self.search.metric

    @property
    def scheduler_mode(self) -> str:
        return self.scheduler.mode or (self.search.mode if not self.scheduler.metric else _default_mode(self.scheduler.metric))


def _default_mode(metric: str) -> str:
    return "min" if re.search(r"(loss|err)", metric.split("/")[-1]) else "max"


# --------------------------------------------------------------------------- errors


def _loc(err: dict, tree: dict) -> str:
    parts: list[str] = []
    node: Any = tree
    for p in err["loc"]:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
            name = node[p].get("name") if isinstance(node, list) and p < len(node) and isinstance(node[p], dict) else None
            if name and parts and parts[-1].startswith("axes["):
                parts[-1] += f" ({name})"
        elif str(p).startswith(("function-", "union[")):  # pydantic validator frames, not keys
            continue
        else:
            parts.append(str(p))
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "<top level>"


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    return f"{loc}: {e['msg']}" if loc else e["msg"]


def format_spec_error(err: ValidationError, path: Path, tree: dict) -> str:
    lines = [f"invalid sweep file {path}:"]
    for e in err.errors():
        where = _loc(e, tree)
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(e["loc"])
            hint = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1)
            msg = "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}")
        elif e["type"] == "literal_error":
            msg = f"must be one of {e['ctx']['expected']}, got {e.get('input')!r}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = re.sub(r"^(Value|Assertion) error, ", "", e["msg"])
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = SweepSpec
    for p in loc[:-1]:
        if isinstance(p, int):
            continue
        fld = model.model_fields.get(str(p))
        if fld is None:
            break
        inner = [m for m in _models_in(fld.annotation)]
        if not inner:
            break
        model = inner[0]
    return sorted(model.model_fields)


# --------------------------------------------------------------------------- config paths


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """BaseModel classes inside an annotation (Optional, Union, Annotated, list unwrapped)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def config_paths(model: type[BaseModel] = TrainConfig, prefix: str = "") -> set[str]:
    """Every dotted path into the trainer config, sections included.

    For a union (the masking strategies) the paths of every member are valid; whether a
    key fits the chosen strategy is for the full config validation to say.
    """
    out: set[str] = set()
    for name, fld in model.model_fields.items():
        path = prefix + name
        out.add(path)
        if typing.get_origin(fld.annotation) is list:
            continue
        for sub in _models_in(fld.annotation):
            out |= config_paths(sub, path + ".")
    return out


def check_path(path: str, where: str, known: set[str]) -> None:
    if path in known:
        return
    hint = difflib.get_close_matches(path, sorted(known), n=1, cutoff=0.6)
    raise SpecError(f"{where}: unknown config path {path!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "; see docs/CONFIG.md for the keys"))


# --------------------------------------------------------------------------- trials


def format_label(value: Any) -> str:
    """Label of a plain axis value: ``str(value)`` as the analysis package expects."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()
    return s[:limit].strip("-") or "x"


@dataclass(frozen=True)
class Trial:
    """One expanded trial: axis labels, the values they set, and the validated config tree."""

    key: str                      # stable id: MLflow tag ajepa.trial_id and the trial's folder
    index: int
    seed: int
    labels: dict[str, str]        # axis name -> value label, in spec order
    assignments: dict[str, Any]   # dotted config key -> value, from the axes
    tree: dict                    # dump_config of the validated TrainConfig
    kind: str = TRIAL             # TRIAL, or CONTROL: no pretraining, the encoder evaluated as initialised

    def config(self) -> TrainConfig:
        return build_config(self.tree, f"trial {self.key}")

    @property
    def is_control(self) -> bool:
        return self.kind == CONTROL

    @property
    def run_name(self) -> str:
        labels = [CONTROL_LABEL] if self.is_control else list(self.labels.values())
        return " | ".join([*labels, f"seed {self.seed}"])

    def to_dict(self) -> dict:
        return {"key": self.key, "index": self.index, "seed": self.seed, "labels": self.labels,
                "assignments": self.assignments, "tree": self.tree, "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "Trial":
        return cls(**d)


@dataclass
class Sweep:
    """A loaded spec with everything resolved: base tree, storage, tracking URI, trials."""

    spec: SweepSpec
    path: Path
    base_path: Path
    base_tree: dict                       # base YAML + spec overrides (before axes)
    storage: Path
    tracking_uri: str
    spec_hash: str
    trials: list[Trial] = field(default_factory=list)   # empty for optuna (sampled online)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def experiment(self) -> str:
        return self.spec.tracking.experiment or self.spec.name

    @property
    def sweep_dir(self) -> Path:
        return self.storage / self.spec.name

    def trial_dir(self, key: str) -> Path:
        return self.sweep_dir / "trials" / key

    @property
    def num_trials(self) -> int:
        """Every trial the sweep runs, control trials included."""
        if self.spec.search.kind == "optuna":
            return self.spec.search.num_samples * len(self.spec.seeds)
        return len(self.trials)

    @property
    def controls(self) -> list[Trial]:
        """The control trials (one per seed; none when ``control: false`` or for Optuna)."""
        return [t for t in self.trials if t.is_control]

    def axes_tag(self, seen: dict[str, list[str]] | None = None) -> list[dict]:
        """Parent-run tag ``ajepa.axes``: axis names and labels in spec order.

        A sampled axis has no labels in the spec: its labels are the values drawn (from the
        expanded trials, or ``seen`` in finished Optuna runs), in numeric order.
        """
        out = []
        for axis in self.spec.axes:
            if axis.values is not None:
                labels = axis.labels()
            else:
                drawn = (seen or {}).get(axis.name) or [t.labels[axis.name] for t in self.trials
                                                         if not t.is_control]
                labels = sorted(dict.fromkeys(drawn), key=float)
            out.append({"name": axis.name, "labels": labels})
        return out

    def build_trial(self, index: int, key: str, seed: int, labels: dict[str, str],
                    assignments: dict[str, Any], kind: str = TRIAL) -> Trial:
        """Assemble and validate one trial's config (raises SpecError naming the trial)."""
        tree = apply_overrides(self.base_tree, assignments)
        tree = apply_overrides(tree, {"seed": seed, "out_dir": str(self.trial_dir(key)),
                                      "name": f"{self.spec.name}/{key}"})
        desc = ", ".join(f"{k}={v}" for k, v in labels.items())
        try:
            cfg = build_config(tree, f"{self.path} trial {key} ({desc}, seed {seed})")
        except ConfigError as err:
            raise SpecError(f"{err}\n  (the axis values {assignments} on base {self.base_path} "
                            f"+ overrides give an invalid trainer config)") from None
        absolute_paths(cfg, Path.cwd())
        return Trial(key=key, index=index, seed=seed, labels=dict(labels), assignments=dict(assignments),
                     tree=dump_config(cfg), kind=kind)


def absolute_paths(model: BaseModel, root: Path) -> None:
    """Make every relative path in a config absolute (against ``root``), in place.

    Ray runs each trial in its own working directory, where ``.cache/ajepa`` or a
    relative dataset root would point somewhere else for every trial.
    """
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            setattr(model, name, (root / value).resolve())
        elif isinstance(value, BaseModel):
            absolute_paths(value, root)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    absolute_paths(item, root)


def load_sweep(path: str | Path, base: str | Path | None = None, storage: str | Path | None = None,
               tracking_uri: str | None = None, resources: dict[str, Any] | None = None) -> Sweep:
    """Read, validate and expand a sweep file; every error is a :class:`SpecError`.

    ``base``/``storage``/``tracking_uri``/``resources`` are the CLI overrides (paths relative
    to the cwd; resources merged into the spec's, e.g. ``{"gpu": 1}`` for a GPU base).
    """
    path = Path(path)
    tree = read_spec_yaml(path)
    if resources:
        tree["resources"] = {**(tree.get("resources") or {}), **resources}
    try:
        spec = SweepSpec.model_validate(tree)
    except ValidationError as err:
        raise SpecError(format_spec_error(err, path, tree)) from None

    base_path = _resolve_base(path, spec.base, base)
    try:
        base_tree = read_yaml(base_path)
    except ConfigError as err:
        raise SpecError(f"{path}: base: {err}") from None
    known = config_paths()
    for key in spec.overrides:
        check_path(key, f"{path}: overrides", known)
    for stem, extra in spec.base_overrides.items():
        for key in extra:
            check_path(key, f"{path}: base_overrides.{stem}", known)
    for axis in spec.axes:  # value shapes were checked by the model; now the paths
        for key in axis.keys() if axis.values is not None else [axis.key]:
            check_path(key, f"{path}: axis {axis.name!r}", known)
    try:
        base_tree = apply_overrides(base_tree, spec.overrides)
        base_tree = apply_overrides(base_tree, spec.base_overrides.get(base_path.stem, {}))
    except ConfigError as err:
        raise SpecError(f"{path}: overrides: {err}") from None

    storage_dir = Path(storage if storage is not None else spec.storage).expanduser().resolve()
    uri = tracking_uri or spec.tracking.uri or default_tracking_uri(storage_dir)
    sweep = Sweep(spec=spec, path=path, base_path=base_path, base_tree=base_tree, storage=storage_dir,
                  tracking_uri=uri, spec_hash=_spec_hash(spec, base_tree))
    if spec.search.kind == "optuna":
        _validate_space(sweep)
    else:
        sweep.trials = _expand(sweep)
        if sweep.controls:  # a sweep without controls keeps the hash it had before they existed
            sweep.spec_hash = _spec_hash(spec, base_tree, control=True)
    _check_metrics(sweep)
    _check_device(sweep)
    return sweep


def _check_device(sweep: Sweep) -> None:
    """A trial pinned to CUDA but given no GPU by Ray would fail at its first step."""
    trees = [t.tree for t in sweep.trials] or [sweep.base_tree]
    if sweep.spec.resources.gpu == 0 and any(tree.get("device") == "cuda" for tree in trees):
        raise SpecError(
            f"{sweep.path}: the trial config sets device: cuda (base {sweep.base_path}), but resources.gpu "
            "is 0, so Ray gives each trial no GPU. Fix: --gpus-per-trial 1 (or resources.gpu in the "
            "spec), or device: auto to train on CPU."
        )


def _resolve_base(spec_path: Path, spec_base: str, cli_base: str | Path | None) -> Path:
    if cli_base is not None:
        p = Path(cli_base).expanduser()
        if not p.is_file():
            raise SpecError(f"--base {cli_base}: file not found")
        return p.resolve()
    p = Path(spec_base).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [spec_path.resolve().parent.parent / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SpecError(f"{spec_path}: base: {spec_base} not found (looked in "
                    f"{', '.join(str(c) for c in dict.fromkeys(candidates))}); "
                    "paths are relative to the spec folder's parent, or pass --base")


def _spec_hash(spec: SweepSpec, base_tree: dict, control: bool = False) -> str:
    """Hash of what defines the trials (not resources, tracking, storage or descriptions).

    Resuming a sweep whose hash changed would mix two different experiments under one
    parent run, so the runner refuses that. ``control``: the sweep has control trials
    (random search draws its combinations from the hash without them, so switching
    controls on or off leaves the drawn combinations alone).
    """
    content = spec.model_dump(mode="json", include={"name", "axes", "seeds", "search", "scheduler"})
    if control:
        content["control"] = True
    # overrides and base_overrides are inside base_tree, already resolved for this base
    blob = json.dumps({"spec": content, "base": base_tree}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def spec_hash_without_controls(sweep: Sweep) -> str:
    """The hash the sweep would have with ``control: false`` (what sweeps started before
    control trials existed were saved under)."""
    return _spec_hash(sweep.spec, sweep.base_tree)


def _combinations(sweep: Sweep) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(labels, assignments) per axis combination: grid product, or random samples."""
    spec = sweep.spec
    per_axis = [axis.items() for axis in spec.axes]
    if spec.search.kind == "grid":
        combos = itertools.product(*per_axis) if per_axis else [()]
        return [({a.name: it.label for a, it in zip(spec.axes, combo)},
                 {k: v for it in combo for k, v in it.assignments.items()}) for combo in combos]
    rng = random.Random(f"{spec.search.seed}-{sweep.spec_hash}")
    out = []
    for _ in range(spec.search.num_samples):
        labels, assignments = {}, {}
        for axis, items in zip(spec.axes, per_axis):
            if axis.distribution is not None:
                value = axis.distribution.sample(rng)
                labels[axis.name] = format_label(value)
                assignments[axis.key] = value
            else:
                item = rng.choice(items)
                labels[axis.name] = item.label
                assignments.update(item.assignments)
        out.append((labels, assignments))
    return out


def _expand(sweep: Sweep) -> list[Trial]:
    trials: list[Trial] = []
    combos = _combinations(sweep)
    width = max(3, len(str(len(combos) * len(sweep.spec.seeds) - 1)))
    for labels, assignments in combos:
        for seed in sweep.spec.seeds:
            index = len(trials)
            key = f"{index:0{width}d}-" + (slug("-".join(labels.values()), 32) + "-" if labels else "") + f"s{seed}"
            trials.append(sweep.build_trial(index, key, seed, labels, assignments))
    if sweep.spec.control and combos:
        trials += _controls(sweep, combos[0][1], trials[0], start=len(trials))
    return trials


def _controls(sweep: Sweep, assignments: dict[str, Any], first: Trial, start: int) -> list[Trial]:
    """One control trial per seed: the first combination's config, evaluated at initialisation.

    None when that config evaluates nothing (``eval.tasks`` empty): a control row needs
    the probe to say anything.
    """
    if not first.tree.get("eval", {}).get("tasks"):
        return []
    return [sweep.build_trial(start + i, f"control-s{seed}", seed, {}, assignments, kind=CONTROL)
            for i, seed in enumerate(sweep.spec.seeds)]


def _validate_space(sweep: Sweep) -> None:
    """Optuna samples online, so validate each axis value / range end against the base."""
    for axis in sweep.spec.axes:
        if axis.distribution is not None:
            cases = [(format_label(v), {axis.key: v}) for v in axis.distribution.corners()]
        else:
            cases = [(it.label, it.assignments) for it in axis.items()]
        for label, assignments in cases:
            sweep.build_trial(0, "validate", sweep.spec.seeds[0], {axis.name: label}, assignments)


def sample_trial(sweep: Sweep, key: str, seed: int, choice: dict[str, Any]) -> Trial:
    """The trial for one Optuna suggestion: ``choice`` maps axis name -> label or sampled value."""
    labels, assignments = {}, {}
    for axis in sweep.spec.axes:
        picked = choice[axis.name]
        if axis.distribution is not None:
            if axis.distribution.kind == "randint":
                picked = int(round(picked))
            labels[axis.name] = format_label(picked)
            assignments[axis.key] = picked
        else:
            item = next(it for it in axis.items() if it.label == picked)
            labels[axis.name] = item.label
            assignments.update(item.assignments)
    return sweep.build_trial(-1, key, seed, labels, assignments)


def _check_metrics(sweep: Sweep) -> None:
    """Eval metrics must name an eval task of the trial config; ASHA needs a metric seen mid-run."""
    sample = build_config(sweep.trials[0].tree) if sweep.trials else build_config(
        apply_overrides(sweep.base_tree, {"out_dir": str(sweep.sweep_dir)}))
    tasks = [t.name or t.task for t in sample.eval.tasks]
    spec = sweep.spec
    for where, metric in [("search.metric", spec.search.metric), ("scheduler.metric", spec.scheduler.metric),
                          *[(f"metrics[{i}]", m) for i, m in enumerate(spec.metrics)]]:
        if metric and metric.startswith("eval/"):
            task = metric.split("/")[1] if metric.count("/") >= 2 else ""
            if task not in tasks:
                raise SpecError(f"{sweep.path}: {where}: {metric!r} names eval task {task!r}, but the trial "
                                f"config evaluates {tasks or 'nothing (eval.tasks is empty)'}")
    sched_metric = spec.scheduler_metric
    if spec.scheduler.kind == "asha" and sched_metric and sched_metric.startswith("eval/") \
            and not sample.eval.every_steps:
        raise SpecError(f"{sweep.path}: scheduler: ASHA compares trials mid-run on {sched_metric!r}, which is "
                        "only measured at the end: set scheduler.metric: train/loss (mode: min) or "
                        "overrides: {eval.every_steps: N}")
