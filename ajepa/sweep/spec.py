"""Sweep spec: YAML -> validated :class:`SweepSpec` -> expanded, validated trials.

Everything here runs before Ray starts and imports neither Ray nor torch, so a typo in a
sweep file, an axis path the trainer does not know or a value its config rejects fails in
a second with the file, the key and the fix -- not after the cluster has spun up.

This module is the loader (:func:`load_sweep`) and the front door of the sweep spec: the
schema is :mod:`ajepa.sweep.schema`, the error wording :mod:`ajepa.sweep.errors`, the
config's known paths :mod:`ajepa.sweep.introspect`, the expansion into trials
:mod:`ajepa.sweep.trials`. Their public names are re-exported here, because
``ajepa.sweep.spec.<name>`` is where callers, and the pickled trial plans of sweeps started
before the split (a resumed Ray run unpickles them by that path), find them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ajepa.config import ConfigError, apply_overrides, build_config, read_yaml
from ajepa.contracts import CONTROL_LABEL, DEFAULT_STORAGE, default_tracking_uri, format_label, read_yaml_mapping
from ajepa.sweep.errors import SpecError, check_path, format_spec_error
from ajepa.sweep.introspect import config_paths
from ajepa.sweep.schema import (
    DEFAULT_BASE,
    SWEEP_OWNED_KEYS,
    Axis,
    AxisItem,
    AxisValue,
    Distribution,
    ResourcesSpec,
    SchedulerSpec,
    SearchSpec,
    SweepSpec,
    TrackingSpec,
)
from ajepa.sweep.trials import (
    CONTROL,
    TRIAL,
    Sweep,
    Trial,
    absolute_paths,
    expand,
    sample_trial,
    slug,
    spec_hash,
    spec_hash_without_controls,
    validate_space,
)

__all__ = [
    "CONTROL", "CONTROL_LABEL", "DEFAULT_BASE", "DEFAULT_STORAGE", "SWEEP_OWNED_KEYS", "TRIAL", "Axis", "AxisItem",
    "AxisValue", "Distribution", "ResourcesSpec", "SchedulerSpec", "SearchSpec", "SpecError", "Sweep", "SweepSpec",
    "Trial", "TrackingSpec", "absolute_paths", "check_path", "config_paths", "format_label", "format_spec_error",
    "load_sweep", "read_spec_yaml", "sample_trial", "slug", "spec_hash_without_controls",
]


def read_spec_yaml(path: Path) -> dict:
    """The top-level mapping of a sweep file (the one YAML reader, :mod:`ajepa.contracts`)."""
    return read_yaml_mapping(path, SpecError, "sweep file", "a mapping (name, base, axes, ...)")


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
                  tracking_uri=uri, spec_hash=spec_hash(spec, base_tree))
    if spec.search.kind == "optuna":
        validate_space(sweep)
    else:
        sweep.trials = expand(sweep)
        if sweep.controls:  # a sweep without controls keeps the hash it had before they existed
            sweep.spec_hash = spec_hash(spec, base_tree, control=True)
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
