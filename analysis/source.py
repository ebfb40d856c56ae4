"""Where a sweep's runs live: read just enough of a sweep YAML to find its MLflow store.

Deliberately not the sweep package's validator (``ajepa.sweep.spec``): tables must work
on any spec that names its runs, including older specs and ones whose base config has
since moved, and without importing the sweep layer (Ray, torch). Only ``name``,
``description``, ``table``, ``tracking``, ``storage``, ``metrics``, ``seeds`` and the axis
labels are read, with the sweep's own YAML loader and label format (:mod:`ajepa.contracts`),
so a label here is the label the sweep tagged its runs with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ajepa.contracts import (
    DEFAULT_STORAGE,
    SpecError,
    default_tracking_uri,
    format_label,
    local_store_path,
    read_yaml_mapping,
)
from analysis.runs import Axis

__all__ = ["DEFAULT_STORAGE", "SpecError", "SweepSource", "format_label", "read_spec", "resolve_source"]


@dataclass
class SweepSource:
    """Enough of a sweep to load and title its table."""

    experiment: str
    uri: str
    name: str | None = None
    description: str | None = None
    table: str | None = None
    metrics: list[str] = field(default_factory=list)
    seeds: list[int] | None = None
    axes: list[Axis] = field(default_factory=list)
    spec_path: Path | None = None


def resolve_source(spec_or_experiment: str, tracking_uri: str | None = None) -> SweepSource:
    """A sweep YAML path (anything ending in .yaml/.yml or naming a file) or an experiment name."""
    path = Path(spec_or_experiment)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return read_spec(path, tracking_uri)
    return SweepSource(experiment=spec_or_experiment,
                       uri=tracking_uri or default_tracking_uri(DEFAULT_STORAGE), name=spec_or_experiment)


def read_spec(path: str | Path, tracking_uri: str | None = None) -> SweepSource:
    path = Path(path)
    spec = read_yaml_mapping(path, SpecError, "sweep file", "a mapping (name, base, axes, ...)")
    if not spec.get("name"):
        raise SpecError(f"{path}: a sweep file needs a top-level 'name' (the MLflow experiment)")
    tracking = spec.get("tracking") or {}
    metrics = spec.get("metrics") or []
    return SweepSource(
        experiment=str(tracking.get("experiment") or spec["name"]),
        uri=tracking_uri or tracking.get("uri") or _default_uri(spec.get("storage") or DEFAULT_STORAGE, path),
        name=str(spec["name"]),
        description=spec.get("description"),
        table=spec.get("table"),
        metrics=[metrics] if isinstance(metrics, str) else [str(m) for m in metrics],
        seeds=[int(s) for s in spec["seeds"]] if isinstance(spec.get("seeds"), list) else None,
        axes=_axes(spec.get("axes")),
        spec_path=path,
    )


def _default_uri(storage: str, spec_path: Path) -> str:
    """Storage is relative to the working directory (as the sweep runner resolves it); if no
    store is there but one sits beside the spec folder's parent (the repo root when run
    from elsewhere), use that one."""
    uri = default_tracking_uri(storage)
    if Path(storage).is_absolute() or local_store_path(uri).exists():
        return uri
    beside = default_tracking_uri(spec_path.resolve().parent.parent / storage)
    return beside if local_store_path(beside).exists() else uri


def _axes(raw) -> list[Axis]:
    axes = []
    for axis in raw or []:
        if not isinstance(axis, dict) or "name" not in axis:
            continue
        labels = []
        for value in axis.get("values") or []:
            if isinstance(value, dict) and "label" in value:
                labels.append(str(value["label"]))
            elif isinstance(value, dict):
                labels.append(str(value.get("value", value)))
            else:
                labels.append(format_label(value))
        axes.append(Axis(str(axis["name"]), tuple(labels)))
    return axes
