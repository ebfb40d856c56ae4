"""Typed configuration of every A-JEPA design axis.

One pydantic model per config section; every field carries the paper's default and
`extra="forbid"`, so a typo in a YAML key or a CLI override fails at load time with
the key path, instead of being silently ignored at step 40,000.

A config is built from a YAML file (`yaml.safe_load`) plus dotted overrides such as
``optim.lr=3e-4`` (see :func:`load_config`). Strings like ``"1e-4"`` (which PyYAML
reads as str) are coerced to the field's type by pydantic.

This module imports neither torch nor Ray, so `analysis/` and sweep validation can use
it cheaply.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from ajepa.contracts import UserError, load_yaml, read_yaml_mapping, yaml_problem
from ajepa.io_utils import atomic_write_text


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, assignments are validated, and no
    number may be inf or nan (``optim.lr=.inf`` would otherwise train on garbage)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Range = tuple[float, float]


def union_choices(union: Any, tag: str) -> tuple[str, ...]:
    """The values of discriminator ``tag`` over the member types of an ``Annotated`` union:
    the choice list of a design axis, derived from its declared types, never written twice."""
    members = get_args(get_args(union)[0]) if get_origin(union) is Annotated else get_args(union)
    return tuple(get_args(member.model_fields[tag].annotation)[0] for member in members)


# --------------------------------------------------------------------------- datasets
#
# One type per downstream dataset (the ``task`` of ``eval.tasks[]``), like one type per
# masking strategy: each carries its own fields only, so a flag of one dataset cannot be
# set on another. Its implementation is the module of the same name under
# ajepa/data/sources/ (tests/test_data_sources.py checks the one-to-one match).

#: The flat EvalTask that preceded these types dumped every dataset's fields into every
#: task (run config.yaml files and checkpoints hold them); these are its unset values.
_FLAT_TASK_DEFAULTS: dict[str, Any] = {
    "root": None, "manifest": None, "folds": None, "esc10": False, "classes": 35, "test_manifest": None,
}


class TaskCommon(StrictModel):
    """What every downstream task shares, whatever its dataset."""

    task: str
    protocol: Literal["linear", "finetune"] = "linear"
    name: str | None = Field(None, description="metric prefix; defaults to the task name")
    clip_seconds: float | None = Field(None, gt=0, description="defaults to the task's own clip length")
    target_frames: int | None = Field(None, ge=16, description="defaults to the task's own length")
    max_clips: int | None = Field(None, ge=1, description="cap on clips per split (quick checks)")
    skip_bad_files: bool | None = Field(None, description="defaults to data.skip_bad_files")

    #: The keys that say where the data is, one of which must be set (first: the usual one):
    #: of ``data`` when this dataset is ``data.kind``, of the task for ``ajepa-eval --data``.
    located_by: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _drop_flat_defaults(cls, data: Any) -> Any:
        """A saved flat task (see _FLAT_TASK_DEFAULTS) loads: other datasets' fields at their
        unset value are dropped; a set one stays, so validation names it as foreign."""
        if isinstance(data, dict):
            data = {k: v for k, v in data.items()
                    if k in cls.model_fields or k not in _FLAT_TASK_DEFAULTS or v != _FLAT_TASK_DEFAULTS[k]}
        return data


class SyntheticTask(TaskCommon):
    """The built-in synthetic set: the held-out splits of the very set pretraining generates."""

    task: Literal["synthetic"] = "synthetic"


class RootedTask(TaskCommon):
    """A dataset read from a folder on disk."""

    root: Path | None = Field(None, description="dataset folder")
    located_by: ClassVar[tuple[str, ...]] = ("root",)


class FolderTask(RootedTask):
    """``root/<class>/*.wav``; a seeded, stratified 70/15/15 split."""

    task: Literal["folder"] = "folder"


class ManifestTask(RootedTask):
    """A CSV of ``path,label[,split]`` rows (``;``-joined labels: multi-label)."""

    task: Literal["manifest"] = "manifest"
    root: Path | None = Field(None, description="the CSV itself, when `manifest` is unset (as data.root)")
    manifest: Path | None = Field(None, description="CSV manifest (path,label[,split])")
    located_by: ClassVar[tuple[str, ...]] = ("manifest", "root")


class ESC50Task(RootedTask):
    """ESC-50 (release layout), 5-fold cross-validation."""

    task: Literal["esc50"] = "esc50"
    folds: list[int] | None = Field(None, description="ESC-50 folds to evaluate (default all 5)")
    esc10: bool = Field(False, description="the ESC-10 subset (10 classes)")


class SpeechCommandsTask(RootedTask):
    """Speech Commands (V2, or V1) with its official validation/testing lists."""

    task: Literal["speechcommands"] = "speechcommands"
    version: Literal[2, 1] = Field(2, description="2: speech_commands_v0.02 (35 words); 1: v0.01 (30 words)")
    classes: Literal[35, 30, 12] = Field(
        35, description="every word of the version (35 for V2, 30 for V1; the default follows `version`), "
        "or 10 words + unknown + silence"
    )
    words: list[str] | None = Field(
        None, description="a subset of the version's words as the classes (only their folders are needed)"
    )

    @model_validator(mode="before")
    @classmethod
    def _classes_follow_version(cls, data: Any) -> Any:
        """``version: 1`` alone means its 30 words, so nobody has to write ``classes: 30`` too."""
        if isinstance(data, dict) and data.get("version") == 1 and data.get("classes") is None:
            data = {**data, "classes": 30}
        return data

    @model_validator(mode="after")
    def _classes_match_version(self) -> "SpeechCommandsTask":
        every = {2: 35, 1: 30}[self.version]
        if self.classes not in (every, 12):
            raise ValueError(f"Speech Commands V{self.version} has {every} words: classes={every} or 12, "
                             f"not {self.classes}")
        if self.words is not None and self.classes == 12:
            raise ValueError("words picks the classes of the all-words task; it cannot be combined with classes=12")
        return self


class AudioSetTask(RootedTask):
    """AudioSet (multi-label, mAP) from AST JSON manifests or the official segments CSVs."""

    task: Literal["audioset"] = "audioset"
    root: Path | None = Field(None, description="clip folder holding the segments CSVs (searched recursively)")
    manifest: Path | None = Field(None, description="train manifest (default <root>/balanced_train_segments.csv)")
    test_manifest: Path | None = Field(
        None, description="AudioSet test manifest (default <root>/eval_segments.csv); `manifest` is the train one"
    )
    located_by: ClassVar[tuple[str, ...]] = ("manifest", "root")


class UrbanSound8KTask(RootedTask):
    """UrbanSound8K (release layout), 10-fold cross-validation on its predefined folds."""

    task: Literal["urbansound8k"] = "urbansound8k"
    folds: list[int] | None = Field(None, description="UrbanSound8K folds to evaluate (default all 10)")


class GTZANTask(RootedTask):
    """GTZAN genres with the fault-filtered split lists (train/valid/test_filtered.txt)."""

    task: Literal["gtzan"] = "gtzan"
    root: Path | None = Field(None, description="folder holding genres/<genre>/<genre>.000NN.wav and the split lists")


class NSynthTask(RootedTask):
    """NSynth instrument family (11 classes) on its official train/valid/test releases."""

    task: Literal["nsynth"] = "nsynth"
    root: Path | None = Field(None, description="folder holding nsynth-{train,valid,test}/")


class VoxCeleb1Task(RootedTask):
    """VoxCeleb1 speaker identification (1,251 speakers) with the official iden_split.txt."""

    task: Literal["voxceleb1"] = "voxceleb1"
    root: Path | None = Field(None, description="folder holding wav/<id>/<video>/<utt>.wav and iden_split.txt")


class CremaDTask(RootedTask):
    """CREMA-D emotion (6 classes) on a speaker-disjoint 70/10/20 split of its 91 actors."""

    task: Literal["cremad"] = "cremad"
    root: Path | None = Field(None, description="folder holding AudioWAV/")


class EvarTask(RootedTask):
    """A task from EVAR's prepared metadata: ``evar/metadata/<task>.csv`` (file_name,label,split|fold)."""

    task: Literal["evar"] = "evar"
    root: Path | None = Field(None, description="the audio folder the CSV's file_name values are relative to")
    manifest: Path | None = Field(None, description="EVAR metadata CSV, e.g. evar/metadata/cremad.csv")
    folds: list[int] | None = Field(None, description="CV folds to evaluate when the CSV has a fold column")
    located_by: ClassVar[tuple[str, ...]] = ("manifest",)


EvalTask = Annotated[
    Union[SyntheticTask, FolderTask, ManifestTask, ESC50Task, SpeechCommandsTask, AudioSetTask,
          UrbanSound8KTask, GTZANTask, NSynthTask, VoxCeleb1Task, CremaDTask, EvarTask],
    Field(discriminator="task"),
]
TASK_KINDS = union_choices(EvalTask, "task")
#: task (= data.kind) -> its config type
TASK_TYPES: dict[str, type[TaskCommon]] = dict(zip(TASK_KINDS, get_args(get_args(EvalTask)[0])))


def task_location(task: str, path: str | Path) -> dict[str, Path]:
    """Where one given path puts a task's data: its ``manifest`` when the task reads one and
    the path is a file, else its ``root`` (``ajepa-eval --data``, ``ajepa-sweep --evaluate-data``)."""
    path = Path(path)
    is_manifest = "manifest" in TASK_TYPES[task].model_fields and path.is_file()
    return {"manifest" if is_manifest else "root": path}


def parse_task(fields: dict) -> TaskCommon:
    """A dict with a ``task`` key -> that dataset's task type (pydantic's ValidationError if invalid)."""
    return _TASK_ADAPTER.validate_python(fields)


#: Named groups of tasks: suite -> ((task fields, its conventional folder under the suite's
#: data root), ...). ``general_audio`` is EVAR's linear-probe suite as Riou et al. 2024 report
#: it (ESC-50, US8K, SPCV2, VoxCeleb1, CREMA-D, GTZAN, NSynth; Surge has no module yet, so
#: it runs only through an ``evar`` task). See docs/DATASETS.md.
SUITES: dict[str, tuple[tuple[dict[str, Any], str], ...]] = {
    "general_audio": (
        ({"task": "esc50"}, "ESC-50-master"),
        ({"task": "urbansound8k"}, "UrbanSound8K"),
        ({"task": "speechcommands"}, "speech_commands_v0.02"),
        ({"task": "voxceleb1"}, "VoxCeleb1"),
        ({"task": "cremad"}, "CREMA-D"),
        ({"task": "gtzan"}, "GTZAN"),
        ({"task": "nsynth"}, "nsynth"),
    ),
}


class SuiteConfig(StrictModel):
    """A named suite of tasks, each read from ``<data_root>/<its conventional folder>``; the
    evaluation reports every task plus ``eval/suite/<name>/mean`` (mean of their main metric)."""

    name: Literal[tuple(SUITES)] = Field(description="the suite (see ajepa.config.SUITES, docs/DATASETS.md)")
    data_root: Path = Field(description="folder holding each task's dataset under its conventional folder name")
    task: dict[str, Any] = Field(
        default_factory=dict, description="fields set on every task of the suite (protocol, max_clips, ...)"
    )

    def tasks(self) -> list[TaskCommon]:
        """The suite's tasks, each located under ``data_root``."""
        out = []
        for fields, folder in SUITES[self.name]:
            try:
                out.append(parse_task({**fields, "root": self.data_root / folder, **self.task}))
            except ValidationError as err:
                raise ConfigError(format_validation_error(err, f"suite {self.name!r}, task {fields['task']!r}")
                                  ) from None
        return out


# --------------------------------------------------------------------------- data


class SyntheticConfig(StrictModel):
    """The built-in procedurally generated, labelled dataset (see ajepa.data.synthetic)."""

    num_clips: int = Field(600, ge=10, description="clips in the whole set (train+val+test)")
    seed: int = 0
    snr_db: Range = (0.0, 20.0)
    num_classes: int = Field(
        12, ge=2, le=24, description="event classes used, the first N of ajepa.data.synthetic.CLASS_NAMES: "
        "12 mostly tonal events; up to 24 adds texture and everyday-sound classes (rain, wind, footsteps, speech-like "
        "babble, ...)")
    distractor_prob: float = Field(0.5, ge=0, le=1, description="chance of a quieter event of another class in a clip")
    silence_prob: float = Field(
        0.0, ge=0, le=1, description="chance of a clip being a shorter event without background noise, the rest "
        "digital silence (as zero-padded real clips, e.g. ESC-50's)")
    cache: bool = Field(True, description="cache generated clips as .npy under data.cache_dir")


class DataConfig(StrictModel):
    kind: Literal[TASK_KINDS] = Field("synthetic", description="the dataset (one of the task types of eval.tasks[])")
    root: Path | None = Field(None, description="dataset root directory (unused for synthetic)")
    manifest: Path | None = Field(
        None, description="CSV manifest (path,label[,split]) or AudioSet JSON/segments CSV"
    )
    sample_rate: int = Field(16000, ge=1000)
    clip_seconds: float = Field(10.0, gt=0)
    crop: Literal["random", "center"] = Field(
        "random", description="how to cut target_frames from a longer clip during pretraining"
    )
    skip_bad_files: bool = Field(
        False, description="skip unreadable/empty/non-finite files (their count is reported) instead of failing"
    )
    cache_dir: Path = Path(".cache/ajepa")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    feature_cache: bool = Field(
        True, description="compute each clip's log-mel once into float16 files under cache_dir/features and "
        "crop/normalise those (pretraining and evaluation; bypassed when frontend.dither > 0); "
        "see ajepa.data.feature_cache",
    )
    synthetic: SyntheticConfig = SyntheticConfig()

    @model_validator(mode="after")
    def _root_required(self) -> "DataConfig":
        needs = TASK_TYPES[self.kind].located_by
        if needs and all(getattr(self, key) is None for key in needs):
            alternatives = "".join(f" (or data.{key})" for key in needs[1:])
            raise ValueError(f"data.{needs[0]}{alternatives} is required for data.kind={self.kind!r}")
        return self


# --------------------------------------------------------------------------- frontend

NORM_PRESETS: dict[str, tuple[float, float]] = {
    "audioset": (-4.2677393, 4.5689974),
    "esc50": (-6.6268077, 5.358466),
    "speechcommands": (-6.845978, 5.5654526),
}


class FrontendConfig(StrictModel):
    """Kaldi-compatible log-mel filterbank, as in AST / Audio-MAE / A-JEPA."""

    num_mel_bins: int = Field(128, ge=8)
    frame_length_ms: float = Field(25.0, gt=0)
    frame_shift_ms: float = Field(10.0, gt=0)
    window_type: Literal["hanning", "hamming", "povey", "rectangular", "blackman"] = "hanning"
    dither: float = Field(0.0, ge=0)
    htk_compat: bool = True
    target_frames: int = Field(1024, ge=16, description="frames after pad/crop (1024 for 10 s clips)")
    norm: Literal["preset", "dataset", "fixed", "none"] = Field(
        "preset",
        description="'preset': norm_preset's mean/std; 'dataset': stats.json computed by "
        "`ajepa-stats` beside the data; 'fixed': norm_mean/norm_std; 'none'",
    )
    norm_preset: Literal["audioset", "esc50", "speechcommands"] = "audioset"
    norm_mean: float | None = None
    norm_std: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _fixed_needs_values(self) -> "FrontendConfig":
        if self.norm == "fixed" and (self.norm_mean is None or self.norm_std is None):
            raise ValueError("frontend.norm='fixed' needs frontend.norm_mean and frontend.norm_std")
        return self


# --------------------------------------------------------------------------- model

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # A CPU-sized model for tests and laptop sweeps.
    "tiny": dict(encoder_depth=4, encoder_dim=96, encoder_heads=3, predictor_depth=2,
                 predictor_dim=64, predictor_heads=2),
    "small": dict(encoder_depth=12, encoder_dim=384, encoder_heads=6, predictor_depth=6,
                  predictor_dim=192, predictor_heads=6),
    # ViT-B/16 and the paper's narrow predictor (6 layers, 384 wide, 12 heads).
    "base": dict(encoder_depth=12, encoder_dim=768, encoder_heads=12, predictor_depth=6,
                 predictor_dim=384, predictor_heads=12),
}


class ModelConfig(StrictModel):
    """Encoder and predictor shape. `preset` fills any field the config leaves out."""

    preset: Literal["tiny", "small", "base", "custom"] = "base"
    patch_size: tuple[int, int] = Field((16, 16), description="(frequency, time) patch size")
    encoder_depth: int = Field(12, ge=1)
    encoder_dim: int = Field(768, ge=8)
    encoder_heads: int = Field(12, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    predictor_depth: int = Field(6, ge=1)
    predictor_dim: int = Field(384, ge=8)
    predictor_heads: int = Field(12, ge=1)
    predictor_attention: Literal["per_block", "shared_context"] = Field(
        "per_block",
        description="with several target blocks: 'per_block' = I-JEPA / A-JEPA, each block predicted as in its "
        "own pass (context tokens also attend to that block's mask tokens; the context is repeated once per "
        "block in one batched pass); 'shared_context' = one pass whose context tokens attend to the context "
        "only, shared by all blocks (cheaper, not the papers' semantics)",
    )
    pos_embed: Literal["sincos", "learned"] = "sincos"
    qkv_bias: bool = True
    drop_path: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            preset = data.get("preset", "base")
            if preset in MODEL_PRESETS:
                data = {**MODEL_PRESETS[preset], **data}
        return data

    @model_validator(mode="after")
    def _heads_divide_dims(self) -> "ModelConfig":
        for part in ("encoder", "predictor"):
            dim, heads = getattr(self, f"{part}_dim"), getattr(self, f"{part}_heads")
            if dim % heads:
                raise ValueError(f"model.{part}_dim={dim} is not divisible by model.{part}_heads={heads}")
        return self


# --------------------------------------------------------------------------- masking

#: How blocks sit on the patch grid (see ajepa.masks.geometry). "wrap": on the torus, a block
#: that runs past the last row/column continues at the first, so every patch is equally
#: likely to be target or context (I-JEPA's in-grid placement favours central patches).
#: "wrap_time": wrap along time only. "inside": blocks lie inside the grid, every start
#: position (last row and column included) equally likely.
Placement = Literal["wrap", "wrap_time", "inside"]


def _check_mask_ranges(model: Any, ranges: dict[str, tuple[float, float]]) -> Any:
    """Each (min, max) field must satisfy low < min <= max <= high."""
    for name, (low, high) in ranges.items():
        a, b = getattr(model, name)
        if not (low < a <= b <= high):
            raise ValueError(f"{name} must satisfy {low} < min <= max <= {high}, got {(a, b)}")
    return model


class MaskCommon(StrictModel):
    """What every top-level masking strategy shares."""

    masks_per_clip: int = Field(
        1, ge=1, le=64,
        description="independent mask draws per clip (data2vec 2.0 / EAT's clone_batch): the target "
        "encoder runs once per clip, the context encoder and predictor once per draw; the loss "
        "averages over all draws",
    )


class RandomMask(MaskCommon):
    """Unstructured: `ratio` of all patches, uniformly at random, are targets."""

    strategy: Literal["random"] = "random"
    ratio: float = Field(0.75, gt=0, lt=1)


class TimeMask(MaskCommon):
    """Time strips: whole columns (every frequency patch) over spans of time patches."""

    strategy: Literal["time"] = "time"
    ratio: float = Field(0.75, gt=0, lt=1)
    strip_width: tuple[int, int] = Field((1, 4), description="min/max strip width in patches")

    @model_validator(mode="after")
    def _widths(self) -> "TimeMask":
        return _check_mask_ranges(self, {"strip_width": (0, math.inf)})


class FreqMask(MaskCommon):
    """Frequency strips: whole rows (every time patch) over spans of frequency patches."""

    strategy: Literal["freq"] = "freq"
    ratio: float = Field(0.75, gt=0, lt=1)
    strip_width: tuple[int, int] = Field((1, 2), description="min/max strip height in patches")

    @model_validator(mode="after")
    def _widths(self) -> "FreqMask":
        return _check_mask_ranges(self, {"strip_width": (0, math.inf)})


class BlockMask(MaskCommon):
    """One contiguous target block covering `ratio` of the grid."""

    strategy: Literal["block"] = "block"
    ratio: float = Field(0.75, gt=0, lt=1)
    aspect_ratio: Range = Field((0.75, 1.5), description="time/frequency extent ratio (>1: longer in time)")
    placement: Placement = "wrap"

    @model_validator(mode="after")
    def _ranges(self) -> "BlockMask":
        return _check_mask_ranges(self, {"aspect_ratio": (0, math.inf)})


class _ContextBlockMask(MaskCommon):
    """What multi-block and tf masks share: one context block minus the targets, the
    equal-length batching knobs and the ratio rescaling. Not a strategy by itself."""

    aspect_ratio: Range = Field((0.75, 1.5), description="time/frequency extent ratio (>1: longer in time)")
    context_scale: Range = (0.85, 1.0)
    min_keep: int = Field(4, ge=1, description="minimum context patches")
    ratio: float | None = Field(
        None, gt=0, lt=1,
        description="if set, target scale is rescaled so that the expected union of target "
        "blocks (or strips) covers about this share of the grid (see ajepa.masks.ratio)",
    )
    placement: Placement = "wrap"
    oversample: float = Field(
        2.0, ge=1, le=8,
        description="draw oversample x batch masks and keep those whose context size is nearest "
        "the median, so equal-length batching drops fewer context patches (ajepa.masks.batch)",
    )

    @model_validator(mode="after")
    def _ranges(self):
        return _check_mask_ranges(
            self, {"scale": (0, 1), "aspect_ratio": (0, math.inf), "context_scale": (0, 1)}
        )


class MultiBlockMask(_ContextBlockMask):
    """I-JEPA multi-block: `num_blocks` target blocks + one context block minus targets."""

    strategy: Literal["multiblock"] = "multiblock"
    num_blocks: int = Field(4, ge=1)
    scale: Range = (0.15, 0.2)
    time_bias: float = Field(
        1.0, gt=0, description="multiplies the aspect ratio: >1 biases blocks to stretch along time"
    )


class TFMask(_ContextBlockMask):
    """A-JEPA time-frequency-aware masking: small blocks grown into full time or freq strips."""

    strategy: Literal["tf"] = "tf"
    num_blocks: int = Field(3, ge=1)
    scale: Range = (0.05, 0.075)
    p_time: float = Field(0.5, ge=0, le=1, description="probability a block grows into a time strip")


BaseMask = Annotated[
    Union[RandomMask, TimeMask, FreqMask, BlockMask, MultiBlockMask, TFMask],
    Field(discriminator="strategy"),
]


class CurriculumSchedule(StrictModel):
    """p(t): probability of the hard mask at training progress t in [0, 1] (A-JEPA Fig. 3)."""

    kind: Literal["constant", "linear", "root", "power", "exponential", "cosine", "step"] = "root"
    c0: float = Field(0.01, ge=0, le=1, description="initial competence (p at t=0)")
    power: float = Field(
        2.0, gt=0,
        description="root degree k for 'power': p = (t(1-c0^k)+c0^k)^(1/k); k=2 is 'root', "
        "k=1 'linear', k<1 starts slowly",
    )
    value: float = Field(0.5, ge=0, le=1, description="p for 'constant'")
    steps: list[float] = Field(
        default_factory=lambda: [0.5],
        description="switch points for 'step', as fractions of `end`: p rises by an equal share at each",
    )
    end: float = Field(1.0, gt=0, le=1, description="progress at which p reaches 1")

    @model_validator(mode="after")
    def _valid_shape(self) -> "CurriculumSchedule":
        if self.kind == "exponential" and self.c0 <= 0:
            raise ValueError("schedule.kind='exponential' grows geometrically from c0: c0 must be > 0")
        if self.kind == "step" and (
            not self.steps or list(self.steps) != sorted(self.steps) or not all(0 < s <= 1 for s in self.steps)
        ):
            raise ValueError(f"schedule.steps must be increasing values in (0, 1], got {self.steps}")
        return self


class CurriculumMask(MaskCommon):
    """Move from an easy mask to a hard mask following `schedule`."""

    strategy: Literal["curriculum"] = "curriculum"
    easy: BaseMask = Field(default_factory=MultiBlockMask)
    hard: BaseMask = Field(default_factory=TFMask)
    schedule: CurriculumSchedule = CurriculumSchedule()
    per: Literal["sample", "batch"] = "sample"

    @model_validator(mode="before")
    @classmethod
    def _default_strategies(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for part, default in (("easy", "multiblock"), ("hard", "tf")):
                if isinstance(data.get(part), dict) and "strategy" not in data[part]:
                    data[part] = {"strategy": default, **data[part]}
        return data

    @model_validator(mode="after")
    def _views_on_top(self) -> "CurriculumMask":
        for part in ("easy", "hard"):
            if getattr(self, part).masks_per_clip != 1:
                raise ValueError(
                    f"masks_per_clip belongs to the curriculum, not to its {part} mask: "
                    f"set masking.masks_per_clip instead of masking.{part}.masks_per_clip"
                )
        return self


MaskingConfig = Annotated[
    Union[RandomMask, TimeMask, FreqMask, BlockMask, MultiBlockMask, TFMask, CurriculumMask],
    Field(discriminator="strategy"),
]
MASK_STRATEGIES = union_choices(MaskingConfig, "strategy")


# --------------------------------------------------------------------------- objective


def _migrate_loss(loss: dict) -> dict:
    """Loss sections written before each loss had its own type (session 4) hold
    ``beta: 1.0`` whatever the kind: that default is dropped where the kind has no beta.
    A non-default beta on such a kind stays, so validation names it."""
    loss = {"kind": "smooth_l1", **loss}
    if loss["kind"] != "smooth_l1" and loss.get("beta") == 1.0:
        loss = {k: v for k, v in loss.items() if k != "beta"}
    return loss


class LossCommon(StrictModel):
    """What every prediction loss shares: the optional terms the objective adds to it."""

    utterance_weight: float = Field(
        0.0, ge=0,
        description="EAT's utterance loss: weight of the MSE between the mean of the context encoder's "
        "outputs and the mean of the full clip's target features (0 = A-JEPA's patch loss only)",
    )
    variance_weight: float = Field(
        0.0, ge=0,
        description="VICReg's variance term (Bardes et al. 2022) on the context encoder's output tokens: weight of "
        "mean over features of relu(1 - std over the batch's tokens); against dimensional collapse (0 = off)",
    )
    covariance_weight: float = Field(
        0.0, ge=0,
        description="VICReg's covariance term on the same tokens: weight of the summed squared off-diagonal "
        "covariances / width; decorrelates features (0 = off)",
    )


class SmoothL1Loss(LossCommon):
    """A-JEPA's and I-JEPA's loss: quadratic below ``beta``, linear above."""

    kind: Literal["smooth_l1"] = "smooth_l1"
    beta: float = Field(1.0, gt=0, description="smooth-L1 transition point")


class L2Loss(LossCommon):
    """Mean squared error (the issue text calls it the design study's default; its code uses smooth L1)."""

    kind: Literal["l2"] = "l2"


class L1Loss(LossCommon):
    """Mean absolute error."""

    kind: Literal["l1"] = "l1"


class CosineLoss(LossCommon):
    """1 - cosine similarity per patch (BYOL-style; scale-free)."""

    kind: Literal["cosine"] = "cosine"


LossConfig = Annotated[Union[SmoothL1Loss, L2Loss, L1Loss, CosineLoss], Field(discriminator="kind")]
LOSS_KINDS = union_choices(LossConfig, "kind")


class TargetConfig(StrictModel):
    norm: Literal["layer_norm", "patch_zscore", "batch_norm", "none"] = Field(
        "layer_norm",
        description="'layer_norm': each target token standardised over its features (I-JEPA / A-JEPA; Riou et "
        "al. 2024's per-patch norm_pix_loss); 'patch_zscore': each feature channel standardised over the "
        "clip's target tokens; 'batch_norm': over the batch's; 'none'",
    )
    avg_last_k: int = Field(1, ge=1, description="average the last k target-encoder layers")
    input: Literal["full", "targets_only"] = Field(
        "full",
        description="what the target encoder sees: 'full' = the whole spectrogram, targets picked from its "
        "output (I-JEPA / A-JEPA; masking in latent space); 'targets_only' = only the target patches, one "
        "pass per mask (Riou et al. 2024's mask_targets, M2D; masking in input space). A patch in two "
        "target blocks is encoded once (its copy is hidden from attention)",
    )


class EMAConfig(StrictModel):
    start: float = Field(0.996, ge=0, le=1)
    end: float = Field(1.0, ge=0, le=1)
    schedule: Literal["linear", "cosine"] = "linear"


class OptimConfig(StrictModel):
    lr: float = Field(1.5e-4, gt=0, description="base learning rate per 256 samples")
    scale_lr: bool = Field(True, description="effective lr = lr * batch_size / 256")
    min_lr: float = Field(1e-6, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.05, ge=0)
    weight_decay_end: float | None = Field(None, ge=0, description="if set, cosine-schedule wd to this")
    batch_size: int = Field(256, ge=1)
    steps: int | None = Field(None, ge=1, description="total optimiser steps (instead of epochs)")
    epochs: float | None = Field(300, gt=0, description="run length in epochs (unset when steps is given)")
    warmup: float = Field(
        40, ge=0, description="warmup length, in the unit of steps/epochs; a warmup at least as long as the run "
        "(e.g. optim.steps shortened from the command line) is clipped to 10 % of the run, with a warning",
    )
    grad_clip: float | None = Field(None, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    compile: bool = False

    @model_validator(mode="before")
    @classmethod
    def _steps_replace_epochs(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("steps") is not None and "epochs" not in data:
            data = {**data, "epochs": None}
        return data

    @model_validator(mode="after")
    def _one_length(self) -> "OptimConfig":
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of optim.steps or optim.epochs")
        return self


# --------------------------------------------------------------------------- evaluation


class RegularizedMasking(StrictModel):
    """A-JEPA Fig. 4: hide patches from attention during fine-tuning (training steps only).

    One axis, four values, so the paper's comparison is a sweep over ``mode``:
    'attention' = the chosen patches stay in the sequence but no token may attend to them
    (their outputs are built from the other patches); 'drop' = the patches are removed
    from the sequence; 'zero' = the patches' spectrogram input is set to zero; 'none'.
    """

    mode: Literal["attention", "drop", "zero", "none"] = "attention"
    ratio: float = Field(0.1, ge=0, lt=1, description="share of patches masked per training sample")


class FinetuneConfig(StrictModel):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0)
    layer_decay: float = Field(0.75, gt=0, le=1)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    specaug_freq: int = Field(24, ge=0, description="max frequency-mask width in bins")
    specaug_time: int = Field(48, ge=0, description="max time-mask width in frames")
    mixup: float = Field(0.0, ge=0, description="mixup alpha; 0 disables")
    regularized_masking: RegularizedMasking = RegularizedMasking()
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="validation carved from train (epoch selection) when a task has none"
    )


class ProbeConfig(StrictModel):
    """Linear probe on frozen, cached embeddings (ajepa.eval.probe).

    The L2 strength is chosen on a validation split (the task's own, else carved from
    train), never on test; with `refit` the chosen model is refitted on train+val.
    """

    pooling: Literal["mean", "freq_concat", "mean_max"] = Field(
        "mean", description="'mean': average of all patches; 'freq_concat': mean over time per "
        "frequency row, rows concatenated (M2D); 'mean_max': the same frame vectors (rows "
        "concatenated per time column), mean + max over time (EVAR)"
    )
    avg_last_k: int = Field(1, ge=1, description="average the last k encoder layers before pooling")
    input: Literal["whole", "chunks"] = Field(
        "whole", description="'whole': a clip's spectrogram in one pass, time positions past the pretraining "
        "input extrapolated; 'chunks': cut along time into pieces no longer than the pretraining input, "
        "each encoded alone at positions the encoder was trained on, patch features joined in time before "
        "pooling (M2D's encode_lms). Same result when clips are no longer than the pretraining input"
    )
    solver: Literal["lbfgs", "sgd"] = Field(
        "lbfgs", description="'lbfgs': full-batch L-BFGS; 'sgd': minibatch Adam with early stopping (EVAR)"
    )
    l2_grid: list[float] = Field(
        default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1],
        description="L2 strengths tried; loss = mean CE/BCE + l2 * ||W||^2 on standardised features",
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation carved from train when a task has none")
    refit: bool = Field(True, description="refit the selected L2 on train+val before testing")
    max_iter: int = Field(500, ge=1, description="L-BFGS iterations per fit")
    sgd_epochs: int = Field(200, ge=1)
    sgd_lr: float = Field(1e-3, gt=0)
    sgd_batch_size: int = Field(128, ge=1)
    sgd_patience: int = Field(20, ge=1, description="epochs without validation gain before stopping")
    cache: bool = Field(True, description="keep extracted embeddings on disk under eval.cache_dir")


class EvalConfig(StrictModel):
    tasks: list[EvalTask] = Field(default_factory=list)
    suite: SuiteConfig | None = Field(None, description="also evaluate a named suite of tasks (see SuiteConfig)")
    encoder: Literal["target", "context"] = "target"
    every_steps: int | None = Field(None, ge=1, description="also evaluate every N steps")
    batch_size: int = Field(64, ge=1, description="batch size of embedding extraction and evaluation passes")
    seed: int | None = Field(None, description="seed of splits, probes and fine-tuning; default: the run's seed")
    cache_dir: Path | None = Field(None, description="embedding cache; default <data.cache_dir>/embeddings")
    probe: ProbeConfig = ProbeConfig()
    finetune: FinetuneConfig = FinetuneConfig()


_TASK_ADAPTER = TypeAdapter(EvalTask)


# --------------------------------------------------------------------------- top level


class TrainConfig(StrictModel):
    """A complete pretraining experiment: what `ajepa-train` and each sweep trial run."""

    name: str = "ajepa"
    seed: int = 0
    out_dir: Path = Path("runs/ajepa")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        None, ge=1,
        description="torch intra-op threads of the training process. Unset: OMP_NUM_THREADS if set "
        "(Ray sets it per trial), else half the CPUs this process may use (at least 1), which "
        "leaves room for data loading and avoids the 10x slowdown of oversubscribed cores",
    )
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(1, ge=1)
    checkpoint_dir: Path | None = Field(
        None, description="where the pretraining checkpoints live (default out_dir/checkpoints). Runs that "
        "share one (a sweep's trials with one pretraining signature) pretrain once: the first holds a lock "
        "while it trains, the others wait, resume the finished checkpoint and only evaluate",
    )
    data: DataConfig = DataConfig()
    frontend: FrontendConfig = FrontendConfig()
    model: ModelConfig = ModelConfig()
    masking: MaskingConfig = Field(default_factory=MultiBlockMask)
    loss: LossConfig = Field(default_factory=SmoothL1Loss)
    target: TargetConfig = TargetConfig()
    ema: EMAConfig = EMAConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_strategy(cls, data: Any) -> Any:
        """`masking.num_blocks=3` alone means: the default (multiblock) strategy with 3 blocks;
        `loss.beta=2` alone means the default (smooth L1) loss."""
        if isinstance(data, dict) and isinstance(data.get("masking"), dict) and "strategy" not in data["masking"]:
            data = {**data, "masking": {"strategy": "multiblock", **data["masking"]}}
        if isinstance(data, dict) and isinstance(data.get("loss"), dict):
            data = {**data, "loss": _migrate_loss(data["loss"])}
        return data

    @model_validator(mode="after")
    def _grid_fits(self) -> "TrainConfig":
        pf, pt = self.model.patch_size
        if self.frontend.num_mel_bins < pf or self.frontend.target_frames < pt:
            raise ValueError(
                f"spectrogram {self.frontend.num_mel_bins}x{self.frontend.target_frames} is smaller "
                f"than one patch {pf}x{pt}: raise frontend.target_frames or shrink model.patch_size"
            )
        return self

    @property
    def grid(self) -> tuple[int, int]:
        """(frequency patches, time patches) of the pretraining spectrogram."""
        return patch_grid(self.frontend.num_mel_bins, self.frontend.target_frames, self.model.patch_size)


def patch_grid(num_mel_bins: int, frames: int, patch_size: tuple[int, int]) -> tuple[int, int]:
    """Patch grid of a spectrogram; a remainder smaller than one patch is dropped (as Conv2d does)."""
    return num_mel_bins // patch_size[0], frames // patch_size[1]


# --------------------------------------------------------------------------- loading


class ConfigError(UserError):
    """A config that cannot be used; the message names the file, the key path and the fix."""


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 3e-4)``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    if not raw.strip():
        return key, None
    try:
        return key, load_yaml(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({yaml_problem(err)}); quote it, "
                          f"e.g. {key}='\"{raw}\"'") from None


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for ``"a.b.c"``, creating dicts on the way."""
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted!r}: {part!r} is a value ({child!r}), not a section")
        node = child
    node[parts[-1]] = value


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b.c": value}``; lists and tuples stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for i, p in enumerate(e["loc"]) if not _is_union_tag(e["loc"], i))
        tags = [p for i, p in enumerate(e["loc"]) if _is_union_tag(e["loc"], i)]
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; docs/CONFIG.md lists every key)"
            if tags:
                noun = _union_noun(tags[-1])
                msg = f"not a parameter of {noun} {tags[-1]!r} (check the spelling or the {noun})"
        elif e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
            msg = f"must be one of {e['ctx']['expected']}, got {e.get('input')!r}"
        elif e["type"] == "union_tag_invalid" and isinstance(e.get("input"), dict):
            # worded like any other choice list, at the key the user wrote
            tag = e["ctx"]["discriminator"].strip("'")
            choices = next(c for t, c in UNION_AXES.values() if t == tag)
            loc = f"{loc}.{tag}" if loc else tag
            msg = f"must be one of {choices}, got {e['input'].get(tag)!r}"
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "\n".join(lines)


# The config's tagged unions, for error messages: noun -> (discriminator field, choices).
UNION_AXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "masking strategy": ("strategy", MASK_STRATEGIES),
    "loss": ("kind", LOSS_KINDS),
    "task": ("task", TASK_KINDS),
}


def _union_noun(tag: str) -> str:
    return next(noun for noun, (_, choices) in UNION_AXES.items() if tag in choices)


def _is_union_tag(loc: tuple, i: int) -> bool:
    """Pydantic puts the discriminator value into error paths (masking.tf.scale,
    eval.tasks.0.esc50.folds); users write masking.scale. A task's tag follows a list index
    or opens a lone task's path, because 'synthetic' and 'manifest' are also plain keys
    (data.synthetic, eval.tasks.0.manifest.manifest)."""
    part = loc[i]
    if not isinstance(part, str):
        return False
    if part in TASK_KINDS:
        return i == 0 or isinstance(loc[i - 1], int)
    return any(part in choices for _, choices in UNION_AXES.values())


def build_config(tree: dict, source: str = "<dict>") -> TrainConfig:
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_yaml(path: str | Path) -> dict:
    """An experiment file's mapping (the project's one YAML loader: duplicate keys are
    refused naming both lines). An empty file is refused: it would silently start the
    paper's 300-epoch ViT-B defaults."""
    tree = read_yaml_mapping(path, ConfigError, "config file", "a mapping of sections")
    if not tree:
        raise ConfigError(f"{path}: the file sets nothing, which would run the paper's ViT-B defaults for "
                          "300 epochs; start from experiments/tiny.yaml or experiments/paper_vitb.yaml")
    return tree


def apply_overrides(tree: dict, overrides: dict[str, Any] | list[str]) -> dict:
    """Deep-copy `tree` and apply dotted overrides (a dict, or ``key=value`` strings)."""
    tree = copy.deepcopy(tree)
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        set_dotted(tree, key, value)
    return tree


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | list[str] = ()) -> TrainConfig:
    """YAML file (optional) + dotted overrides -> validated :class:`TrainConfig`."""
    tree = read_yaml(path) if path is not None else {}
    tree = apply_overrides(tree, overrides)
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += " + overrides"
    return build_config(tree, source)


def dump_config(cfg: TrainConfig) -> dict:
    """JSON/YAML-safe dict of a config (paths and tuples become str and list)."""
    return cfg.model_dump(mode="json")


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the config as YAML atomically (a kill mid-write leaves the old file whole)."""
    atomic_write_text(path, yaml.safe_dump(dump_config(cfg), sort_keys=False))


def total_steps(cfg: OptimConfig, steps_per_epoch: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    return max(1, math.ceil(cfg.epochs * steps_per_epoch))  # type: ignore[operator]


WARMUP_CLIP_SHARE = 0.1


def warmup_steps(cfg: OptimConfig, steps_per_epoch: int) -> int:
    """Warmup in steps; one at least as long as the run is clipped to 10 % of it, so
    shortening a run from the command line (``optim.steps=60``) needs no second override.
    :func:`warmup_clip_note` says when that happened."""
    warmup = int(cfg.warmup) if cfg.steps is not None else int(round(cfg.warmup * steps_per_epoch))
    total = total_steps(cfg, steps_per_epoch)
    return warmup if warmup < total else int(total * WARMUP_CLIP_SHARE)


def warmup_clip_note(cfg: OptimConfig, steps_per_epoch: int) -> str | None:
    """A one-line warning when :func:`warmup_steps` clipped the configured warmup."""
    unit = "steps" if cfg.steps is not None else "epochs"
    total = total_steps(cfg, steps_per_epoch)
    used = warmup_steps(cfg, steps_per_epoch)
    requested = int(cfg.warmup) if cfg.steps is not None else int(round(cfg.warmup * steps_per_epoch))
    if used == requested:
        return None
    return (f"warning: optim.warmup={cfg.warmup:g} {unit} is not shorter than the run ({total} steps): "
            f"warming up for {used} steps (10 % of the run); set optim.warmup to choose")
