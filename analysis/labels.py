"""Row labels: how an axis combination is named, and when two spellings mean the same row.

The paper writes "random patch 75 %", a sweep file may write "random patch 75%", and a
plain-valued ratio axis is labelled "0.7" where the paper says "70 %". Matching paper
rows and ``--reference`` against our rows by a normalised key keeps those spellings from
silently dropping a row.
"""

from __future__ import annotations

import re
from typing import Iterable

ROW_SEPARATOR = " / "
_PERCENT = re.compile(r"^([-+]?\d+(?:\.\d+)?)%$")


def join_labels(labels: Iterable[object]) -> str:
    """One row label for an axis combination ("0.7 / smooth L1"); one axis: its label."""
    return ROW_SEPARATOR.join(str(label) for label in labels)


def label_key(label: object) -> str:
    """Case-, space- and number-format-insensitive key: "70 %", "70%", "0.7", "0.70" agree."""
    parts = str(label).split(ROW_SEPARATOR.strip())
    return "/".join(_part_key(part) for part in parts)


def _part_key(part: str) -> str:
    text = re.sub(r"\s+", "", part).lower()
    percent = _PERCENT.match(text)
    if percent:
        return _number_key(float(percent.group(1)) / 100)
    try:
        return _number_key(float(text))
    except ValueError:
        return text


def _number_key(value: float) -> str:
    return repr(round(value, 10))


def as_number(label: object) -> float | None:
    """The label as a number ("70 %" -> 0.7, "6" -> 6.0), or None: decides line vs bar plots."""
    text = re.sub(r"\s+", "", str(label))
    percent = _PERCENT.match(text)
    try:
        return float(percent.group(1)) / 100 if percent else float(text)
    except ValueError:
        return None
