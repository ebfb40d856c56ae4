"""MLflow params (always strings) back to the trainer's Python types.

MLflow stores every param as ``str(value)``. To group or plot by ``model.predictor_depth``
or ``masking.ratio`` we want ints and floats again, with the same types the trainer used,
so the dotted key is looked up in :class:`ajepa.config.TrainConfig` and the value is
validated by pydantic against that field's annotation. Masking params depend on the
strategy (``masking.strip_width`` exists only for time/freq strips), so a discriminated
union is resolved with the run's own ``<section>.strategy`` param. A key the config does
not know (an older or newer trainer) keeps its literal value: nothing is dropped.
"""

from __future__ import annotations

import ast
import functools
import json
import types
import typing
from pathlib import PurePath
from typing import Any, Mapping

from pydantic import BaseModel, TypeAdapter, ValidationError

from ajepa.config import TrainConfig

_MISSING = object()


def typed_params(raw: Mapping[str, str]) -> dict[str, Any]:
    """``{"optim.lr": "0.00015", "model.patch_size": "[16, 16]"}`` -> float, tuple, ..."""
    return {key: convert_param(key, value, raw) for key, value in raw.items()}


def convert_param(key: str, value: str, run_params: Mapping[str, str] = {}) -> Any:
    """One param value, typed by the TrainConfig field at ``key`` (see module docstring)."""
    literal = parse_literal(value)
    annotation = field_annotation(key, run_params)
    if annotation is not _MISSING:
        try:
            literal = _adapter(annotation).validate_python(literal)
        except (ValidationError, TypeError):
            pass
    return _plain(literal)


def parse_literal(text: str) -> Any:
    """Python literal ("0.5", "None", "(1, 2)") or JSON ("[true, null]": the sweep logs lists
    and dicts as JSON) if the string is one, else the string itself."""
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def field_annotation(key: str, run_params: Mapping[str, str] = {}) -> Any:
    """Annotation of the TrainConfig field at a dotted key, or a sentinel when unknown."""
    return _annotation_in(TrainConfig, key.split("."), run_params, "")


def _annotation_in(model: type[BaseModel], parts: list[str], run_params: Mapping[str, str], prefix: str) -> Any:
    field = model.model_fields.get(parts[0])
    if field is None:
        return _MISSING
    if len(parts) == 1:
        return field.annotation
    path = prefix + parts[0]
    for member in _section_candidates(field.annotation, run_params.get(path + ".strategy")):
        found = _annotation_in(member, parts[1:], run_params, path + ".")
        if found is not _MISSING:
            return found
    return _MISSING


def _section_candidates(annotation: Any, strategy: str | None) -> list[type[BaseModel]]:
    """Config sections a nested key may live in; the run's strategy picks a union member."""
    members = [m for m in _union_members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if strategy is None or len(members) < 2:
        return members
    chosen = [m for m in members if getattr(m.model_fields.get("strategy"), "default", None) == parse_literal(strategy)]
    return chosen or members


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Annotated:
        return _union_members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _union_members(arg)]
    return [annotation]


@functools.lru_cache(maxsize=None)
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def _plain(value: Any) -> Any:
    """DataFrame-friendly: paths as str, lists as (hashable) tuples, sub-configs as dicts."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
