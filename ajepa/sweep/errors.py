"""Errors of a sweep file, worded to name the file, the key and the fix.

:class:`SpecError` is both the contract's error (what ``analysis/`` raises for a sweep
file it cannot read) and a :class:`~ajepa.config.ConfigError`, so every command that
reports config errors reports it too (``ajepa-sweep`` exits 2 on any of them).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ajepa import contracts
from ajepa.config import ConfigError
from ajepa.contracts import format_validation_errors
from ajepa.sweep.introspect import models_in
from ajepa.sweep.schema import SweepSpec


class SpecError(contracts.SpecError, ConfigError):
    """A sweep file that cannot run; the message names the file, the key and the fix."""


def _loc(err: dict, tree: dict) -> str:
    parts: list[str] = []
    node: Any = tree
    for p in err["loc"]:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
            item = node[p] if isinstance(node, list) and p < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
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


def format_spec_error(err: ValidationError, path: Path, tree: dict) -> str:
    """The spec's validation error, one line per problem, located in the spec's own terms
    (``axes[1] (ratio).values``) and with the allowed keys of the section for a typo."""
    return format_validation_errors(err, f"invalid sweep file {path}:", lambda e: _loc(e, tree), _explain)


def _explain(e: dict) -> str | None:
    if e["type"] != "extra_forbidden":
        return None  # the standard wording
    allowed = _allowed_keys(e["loc"])
    hint = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1)
    return "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}")


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = SweepSpec
    for p in loc[:-1]:
        if isinstance(p, int):
            continue
        fld = model.model_fields.get(str(p))
        if fld is None:
            break
        inner = [m for m in models_in(fld.annotation)]
        if not inner:
            break
        model = inner[0]
    return sorted(model.model_fields)


def check_path(path: str, where: str, known: set[str]) -> None:
    if path in known:
        return
    hint = difflib.get_close_matches(path, sorted(known), n=1, cutoff=0.6)
    raise SpecError(f"{where}: unknown config path {path!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "; see docs/CONFIG.md for the keys"))
