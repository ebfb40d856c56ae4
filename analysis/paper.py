"""The paper's published numbers, shipped as CSV files in ``analysis/paper/``.

One file per paper table (``main``, ``finetune``, ``masking``, ``ratio``, ``predictor``,
``loss``): a ``#`` line saying where the numbers come from, then ``label`` and one column
per reported metric, in the paper's units (points). Data files rather than code, so a
corrected number is a one-line diff a reviewer can check against the PDF.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.labels import label_key

PAPER_DIR = Path(__file__).resolve().parent / "paper"


def available_tables() -> list[str]:
    return sorted(p.stem for p in PAPER_DIR.glob("*.csv"))


def find_paper(name: str | Path) -> Path | None:
    """The CSV for a paper table name ("masking") or path, or None if there is none."""
    path = Path(name)
    if path.suffix == ".csv" and path.is_file():
        return path
    path = PAPER_DIR / f"{name}.csv"
    return path if path.is_file() else None


def paper_table(name: str | Path) -> pd.DataFrame:
    """A paper table by name ("masking") or CSV path; index = row label, columns = metrics."""
    path = find_paper(name)
    if path is None:
        raise KeyError(f"no paper table {str(name)!r}; available: {', '.join(available_tables())} "
                       f"(or a CSV path)")
    frame = pd.read_csv(path, comment="#", dtype={"label": str}, skipinitialspace=True)
    frame = frame.set_index("label")
    frame.attrs["source"] = _source_line(path)
    frame.attrs["name"] = path.stem
    return frame


def align_paper(paper: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """Paper numbers reindexed to our row labels (NaN where the paper has no such row).

    Labels match by :func:`analysis.labels.label_key`, so "75%" meets "75 %" and "0.7"
    meets "70 %". ``attrs["unmatched"]`` lists paper rows no row of ours matched.
    """
    by_key = {label_key(label): label for label in paper.index}
    matched = {row: by_key.get(label_key(row)) for row in rows}
    aligned = pd.DataFrame({col: [paper.at[matched[r], col] if matched[r] is not None else float("nan")
                                  for r in rows] for col in paper.columns},
                           index=pd.Index(rows, name=paper.index.name))
    used = {label for label in matched.values() if label is not None}
    aligned.attrs.update(paper.attrs, unmatched=[label for label in paper.index if label not in used])
    return aligned


def _source_line(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return path.name
