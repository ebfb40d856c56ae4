"""A loaded sweep and its trials: the expansion of a validated spec into trainer configs.

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

import functools
import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ajepa.config import ConfigError, TrainConfig, apply_overrides, build_config, dump_config
from ajepa.contracts import CONTROL_LABEL, ROLE_CONTROL, ROLE_TRIAL, format_label
from ajepa.sweep.errors import SpecError
from ajepa.sweep.schema import SweepSpec
from ajepa.train.checkpoint import LAST, pretraining_signature

TRIAL, CONTROL = ROLE_TRIAL, ROLE_CONTROL     # Trial.kind; also the MLflow ajepa.role of its run


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
        if kind == TRIAL and self.spec.share_pretraining and self.spec.resources.workers == 1:
            cfg.checkpoint_dir = self.shared_pretraining(cfg)
        return Trial(key=key, index=index, seed=seed, labels=dict(labels), assignments=dict(assignments),
                     tree=dump_config(cfg), kind=kind)

    def launch_order(self) -> list[Trial]:
        """The trials in the order the scheduler gets them: the first trial of every
        pretraining before any trial that only reuses one (then the rest in sweep order).
        A trial that waits for another's pretraining holds its slot idle, so no pretraining
        may queue behind such a wait; trial keys and indices keep the sweep's own order."""
        seen: set[str] = set()
        first, reusing = [], []
        for trial in self.trials:
            folder = trial.tree.get("checkpoint_dir")
            (reusing if folder is not None and folder in seen else first).append(trial)
            if folder is not None:
                seen.add(folder)
        own = [t for t in first if not t.is_control]
        return own + reusing + [t for t in first if t.is_control]

    def pretraining_dir(self, signature: str) -> Path:
        """The checkpoint folder of every trial with this pretraining signature."""
        return self.sweep_dir / "pretraining" / signature

    def shared_pretraining(self, cfg) -> Path:
        """The checkpoint folder a trial of config ``cfg`` pretrains into or reuses: its
        signature's (config + this commit), or -- with the spec's
        ``reuse_pretraining_across_commits`` and when this commit has none yet -- the latest
        pretraining of the same config made by another commit (:data:`PRETRAINING_RECORD`)."""
        folder = self.pretraining_dir(pretraining_signature(cfg, self.code_version))
        if not self.spec.reuse_pretraining_across_commits or (folder / LAST).is_file():
            return folder
        return self.earlier_pretraining(pretraining_signature(cfg)) or folder

    def earlier_pretraining(self, config_signature: str) -> Path | None:
        """The folder of the newest checkpoint whose record has ``config_signature``, or None."""
        found = []
        for record in (self.sweep_dir / "pretraining").glob(f"*/{PRETRAINING_RECORD}"):
            try:
                same = json.loads(record.read_text()).get("config_signature") == config_signature
            except (OSError, ValueError):
                continue
            last = record.parent / LAST
            if same and last.is_file():
                found.append((last.stat().st_mtime, record.parent))
        return max(found)[1] if found else None

    @functools.cached_property
    def code_version(self) -> str:
        """Part of every pretraining signature: a new commit pretrains afresh."""
        from ajepa.sweep.tracking import git_commit

        return git_commit(Path(__file__).resolve().parent)


PRETRAINING_RECORD = "pretraining.json"  # in a shared pretraining folder: what made it


def record_pretraining(cfg, code_version: str) -> None:
    """Write ``<checkpoint_dir>/pretraining.json`` (config signature without the code, the
    commit, the full signature) the first time a trial uses the folder, so a later commit
    can find it when asked to reuse it (:meth:`Sweep.shared_pretraining`)."""
    from ajepa.io_utils import atomic_write_text

    folder = Path(cfg.checkpoint_dir)
    record = folder / PRETRAINING_RECORD
    if record.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"config_signature": pretraining_signature(cfg), "code": code_version,
                                          "signature": pretraining_signature(cfg, code_version)}, indent=1))


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


def spec_hash(spec: SweepSpec, base_tree: dict, control: bool = False) -> str:
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
    return spec_hash(sweep.spec, sweep.base_tree)


def combinations(sweep: Sweep) -> list[tuple[dict[str, str], dict[str, Any]]]:
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


def expand(sweep: Sweep) -> list[Trial]:
    trials: list[Trial] = []
    combos = combinations(sweep)
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


def validate_space(sweep: Sweep) -> None:
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
