"""The sweep spec's schema: one pydantic model per section of a ``sweeps/*.yaml``.

Every model forbids unknown keys, so a typo fails when the spec is read, with the
file and the key (:mod:`ajepa.sweep.errors` words the message). Loading, expansion into
trials and the checks against the trainer config are in :mod:`ajepa.sweep.spec`.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ajepa.contracts import DEFAULT_STORAGE, format_label

DEFAULT_BASE = "experiments/tiny.yaml"
SWEEP_OWNED_KEYS = ("out_dir", "name", "seed")


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
                raise ValueError(f"axis {self.name!r}: duplicate value labels {duplicated}; "
                                 "give each value its own label")
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
    share_pretraining: bool = Field(
        True, description="trials whose configs differ only in evaluation settings (their pretraining "
        "signature, ajepa.train.checkpoint.pretraining_signature, with the code's git commit) pretrain once, "
        "into <storage>/<name>/pretraining/<signature>/ (single-process trials; DDP trials keep their own)",
    )
    reuse_pretraining_across_commits: bool = Field(
        False, description="with share_pretraining: a trial whose config was already pretrained by another commit of "
        "the code reuses that checkpoint instead of pretraining afresh (off: a new commit never reuses old weights)",
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
        if self.scheduler.mode:
            return self.scheduler.mode
        return self.search.mode if not self.scheduler.metric else _default_mode(self.scheduler.metric)


def _default_mode(metric: str) -> str:
    return "min" if re.search(r"(loss|err)", metric.split("/")[-1]) else "max"


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    return f"{loc}: {e['msg']}" if loc else e["msg"]
