"""What the sweep writes and ``analysis/`` reads, said once: names, defaults, YAML, errors.

The sweep layer (Ray, MLflow, the trainer) and the analysis package (pandas, never torch)
meet only in the MLflow store and the sweep files. Each side used to carry its own copy
of the tag names, the storage default, the label format and the YAML reader, so a change
on one side silently broke the other. This module is the one copy. It sits on the lowest
floor: it imports no other ajepa module and neither torch nor pydantic, so anything may
import it, ``ajepa.config`` included. docs/ARCHITECTURE.md ("Metric and MLflow naming")
describes the layout these names spell.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

if TYPE_CHECKING:
    from pydantic import ValidationError

# --------------------------------------------------------------------------- MLflow run layout

TAG_ROLE = "ajepa.role"                # every run: its role, one of the ROLE_* below
ROLE_SWEEP, ROLE_TRIAL, ROLE_CONTROL = "sweep", "trial", "control"
TAG_PARENT = "mlflow.parentRunId"      # trial and control runs: the sweep run
TAG_SWEEP = "ajepa.sweep"
TAG_SPEC_HASH = "ajepa.spec_hash"
TAG_TRIAL_ID = "ajepa.trial_id"
TAG_SEED = "ajepa.seed"
TAG_GIT = "ajepa.git_commit"
TAG_PRETRAINING = "ajepa.pretraining"      # trial runs: the pretraining signature whose checkpoint they use
TAG_AXIS_PREFIX = "ajepa.axis."        # + axis name = the trial's value label (no such tags on a control)
TAG_ERROR = "ajepa.error"              # why a run FAILED
TAG_STOP = "ajepa.stop_reason"         # why a run was KILLED (early stop, interrupt)
TAG_ATTEMPTS = "ajepa.attempts"
# the sweep's parent run: what it recorded from its spec (analysis uses them when no spec file is given)
TAG_AXES = "ajepa.axes"                # JSON [{"name": ..., "labels": [...]}, ...] in spec order
TAG_CONTROL = "ajepa.control"          # "1" when the sweep runs control trials
TAG_SEEDS = "ajepa.seeds"
TAG_TABLE = "ajepa.table"
TAG_METRICS = "ajepa.metrics"
TAG_NOTE = "mlflow.note.content"       # the spec's description
TAG_SEARCH = "ajepa.search"
TAG_SEARCH_METRIC = "ajepa.search_metric"
TAG_NUM_TRIALS = "ajepa.num_trials"
TAG_SPEC_FILE = "ajepa.spec_file"
TAG_BASE = "ajepa.base"

TAG_UNITS = "ajepa.units"              # trial/control runs: UNITS_POINTS when eval scores are logged in points
UNITS_POINTS = "points"
# the experiment: the kind the MLflow UI reads to open on the runs table (not the GenAI overview)
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"

#: Params of a trial run: ``axis.<axis name>`` = its value label (compare / parallel-coordinates views).
PARAM_AXIS_PREFIX = "axis."
#: Metrics of the sweep's parent run, per table row and headline metric: ``rows/<row key>/<metric>``
#: (mean over the row's finished seeds; see :func:`metric_key_part`) and ``best/<metric>``.
METRIC_ROW_PREFIX = "rows/"
METRIC_BEST_PREFIX = "best/"
TAG_BEST_ROW_PREFIX = "ajepa.best_row/"   # parent run: + metric = the label of the row behind best/<metric>

#: Run names and table rows of the control trials (the encoder as initialised).
CONTROL_LABEL = "control: initialisation"
#: Artifact folder of a trial run, and folder under its out_dir: ``<task>.csv`` per task.
PREDICTIONS = "predictions"

# metrics every trainer run logs that the sweep and analysis look up by name
METRIC_TRAIN_LOSS = "train/loss"
METRIC_TRAIN_LR = "train/lr"
METRIC_TRAIN_STEPS = "train/steps"     # in the final summary: optimizer steps done (0 for a control)
METRIC_EVAL_STEP = "eval/step"         # the step of the evaluation the eval/* metrics belong to

# --------------------------------------------------------------------------- units

#: Scores that are logged (MLflow) and tabulated in points (0-100), as the papers report them.
POINT_METRICS = ("acc", "map", "f1", "acc_std", "map_std", "f1_std")
POINT_DECIMALS = 3  # 0.001 points: distinct for test sets of up to 100 000 clips


def is_point_metric(key: str) -> bool:
    """``eval/<task>/[fold<k>/]{acc,map,f1}`` and their ``_std``: a score the evaluator gives as a fraction."""
    parts = key.split("/")
    return len(parts) >= 3 and parts[0] == "eval" and parts[-1] in POINT_METRICS


def to_points(fraction: float) -> float:
    """A fraction (0.24444...) as points rounded to :data:`POINT_DECIMALS` (24.444)."""
    return round(float(fraction) * 100.0, POINT_DECIMALS)


def logged_value(key: str, value: float, points: bool) -> float:
    """What a run logs for ``key``: a finite score in points when the run logs points
    (tag ``ajepa.units=points``), every other value as given."""
    return to_points(value) if points and is_point_metric(key) and math.isfinite(value) else float(value)


def metric_key_part(text: str) -> str:
    """``text`` as one part of an MLflow metric key (letters, digits, ``_ - .`` and spaces, which
    every platform accepts): "random patch 75 %" -> "random patch 75pct", "M=1, 8 clips" ->
    "M1 8 clips", "0.4 / L2" -> "0.4 x L2"."""
    text = str(text).replace("%", "pct").replace(" / ", " x ")
    text = re.sub(r"[^\w.\- ]", "", text, flags=re.ASCII)
    text = re.sub(r"(\d) pct", r"\1pct", re.sub(r"\s+", " ", text)).strip()
    return text if text.strip(".") else "_"


# --------------------------------------------------------------------------- where runs live

DEFAULT_STORAGE = "runs/sweeps"


def default_tracking_uri(storage: str | Path) -> str:
    """Absolute SQLite MLflow URI under a sweep storage folder.

    Absolute because Ray trials run in another working directory and MLflow 3 resolves a
    relative URI (and refuses ``./mlruns``) against that directory.
    """
    path = Path(storage).expanduser().resolve() / "mlflow.db"
    return f"sqlite:///{path}"


def local_store_path(uri: str) -> Path | None:
    """The file (sqlite) or folder (file:) behind a local tracking URI; None for servers."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?", 1)[0])  # 4 slashes: absolute path
    if uri.startswith("file:"):
        return Path(re.sub(r"^file:(//)?", "", uri))
    if "://" not in uri:
        return Path(uri)
    return None


def format_label(value: Any) -> str:
    """A plain axis value's label (MLflow tag ``ajepa.axis.<name>``, table row): floats to 4
    significant digits, anything else ``str(value)``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class UserError(ValueError):
    """A request that cannot run as given, in words the user can act on: the message names
    the file or key and the fix. Every project error a user can cause derives from it, so
    each command catches this one type and prints one line (``ajepa.cli.common``)."""


class DivergedError(RuntimeError):
    """A run whose loss became non-finite: not the user's input, not a bug, its own exit code."""


class SpecError(UserError):
    """A sweep file that cannot be used; the message names the file, the key and the fix."""


# --------------------------------------------------------------------------- YAML


class YamlLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, with two mistakes it lets through made visible.

    * ``1e-4`` is a float (YAML 1.2 and every reader of a sweep file agree; PyYAML's 1.1
      resolver would want ``1.0e-4`` and return the string ``"1e-4"``, so the label of an
      axis value depended on who read the file).
    * A key twice in one mapping is refused with both lines: the safe loader keeps the last
      one silently, so ``lr: 1e-3`` further down a long file undid the ``lr`` above it.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor`` may override on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                    f"(first at line {first + 1}): keep one", key_node.start_mark)
        return super().construct_mapping(node, deep)


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`YamlLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - YamlLoader is a SafeLoader


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where (PyYAML's own text spans lines and
    calls the file "<unicode string>")."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def read_yaml_mapping(path: str | Path, error: type[Exception] = ValueError, what: str = "file",
                      top_level: str = "a mapping") -> dict:
    """The mapping at the top of a YAML file; every problem is ``error`` naming the file.

    ``what`` names the file in the not-found message ("sweep file"), ``top_level`` says what
    the top level should hold. An empty file is an empty mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        tree = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(tree, dict):
        raise error(f"{path}: the top level must be {top_level}, got {type(tree).__name__}")
    return tree


# --------------------------------------------------------------------------- validation errors


def format_validation_errors(err: "ValidationError", header: str,
                             locate: Callable[[dict], str] | None = None,
                             explain: Callable[[dict], str | None] | None = None) -> str:
    """A pydantic error as one line per problem under ``header``: ``  where: what to fix``.

    ``locate(error) -> str`` names the place (default: the dotted ``loc``); ``explain(error)``
    may word a message its caller knows better (None: the standard wording below).
    """
    lines = [header]
    for e in err.errors():
        where = locate(e) if locate is not None else ".".join(str(p) for p in e["loc"])
        message = explain(e) if explain is not None else None
        lines.append(f"  {where or '<top level>'}: {message if message is not None else standard_message(e)}")
    return "\n".join(lines)


def standard_message(e: dict) -> str:
    """Pydantic's message for one error, in the project's words where they are clearer."""
    if e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
        return f"must be one of {e['ctx']['expected']}, got {e.get('input')!r}"
    if e["type"] == "missing":
        return "required key is missing"
    return re.sub(r"^(Value|Assertion) error, ", "", e["msg"])
