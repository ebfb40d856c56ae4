"""Which dotted paths the trainer config has, read off its pydantic models.

The sweep checks every key a spec sets (overrides, axis keys) against these before
building any trial, so ``masking.ratoi`` fails with "did you mean 'masking.ratio'?"
instead of deep inside a trial's config validation.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from ajepa.config import TrainConfig


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """BaseModel classes inside an annotation (Optional, Union, Annotated, list unwrapped)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(models_in(arg))
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
        for sub in models_in(fld.annotation):
            out |= config_paths(sub, path + ".")
    return out
