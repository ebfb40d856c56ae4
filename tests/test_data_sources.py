"""One module per dataset: every declared task type has exactly one implementation, and a
new folder-style dataset needs only its module and its config type."""

from __future__ import annotations

import argparse
import typing
from typing import Literal

import numpy as np
import pytest
import soundfile

import ajepa.data.sources.base as sources_base
from ajepa.cli.eval import parse_args, task_from_args
from ajepa.config import TASK_KINDS, TASK_TYPES, ConfigError, DataConfig, ESC50Task, FrontendConfig, RootedTask
from ajepa.data.datasets import ClipRecord, DatasetLayoutError
from ajepa.data.sources import SOURCES, DatasetSource, Source, TaskSpec, register, source_for
from ajepa.data.sources.base import ensure_splits, needs_root
from ajepa.data.tasks import build_task

RATE = 16000


def test_every_declared_dataset_has_exactly_one_implementation_and_vice_versa():
    assert sorted(SOURCES) == sorted(TASK_KINDS) and len(set(TASK_KINDS)) == len(TASK_KINDS)
    for name, source in SOURCES.items():
        assert source.config is TASK_TYPES[name] and source.name == name
        assert type(source).__module__ == f"ajepa.data.sources.{name}"  # its own module
        assert source.spec.metric in ("acc", "map")
    with pytest.raises(ValueError, match="'esc50' is already implemented by ESC50"):
        register(ESC50Task)(type("SecondESC50", (DatasetSource,), {}))


def test_choice_lists_derive_from_the_task_types():
    assert typing.get_args(DataConfig.model_fields["kind"].annotation) == TASK_KINDS
    for kind in TASK_KINDS:
        assert parse_args(["last.pt", "--task", kind]).task == kind
    with pytest.raises(SystemExit):
        parse_args(["last.pt", "--task", "nope"])
    with pytest.raises(ValueError, match=r"no dataset module implements task 'nope'"):
        source_for("nope")


def test_eval_cli_task_fields_belong_to_the_task(tmp_path):
    args = argparse.Namespace(task="speechcommands", protocol="linear", name=None, data=tmp_path)
    with pytest.raises(ConfigError, match=r"task\.esc10: not a parameter of task 'speechcommands'"):
        task_from_args(args, {"esc10": True})
    assert task_from_args(args, {"classes": 12}).classes == 12
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\n")
    assert task_from_args(argparse.Namespace(task="audioset", protocol="linear", name=None, data=manifest),
                          {}).manifest == manifest
    # a location given as a task field is enough; none at all names --data
    assert task_from_args(argparse.Namespace(task="manifest", protocol="linear", name=None, data=None),
                          {"manifest": str(manifest)}).manifest == manifest
    with pytest.raises(ConfigError, match="--task audioset needs --data PATH"):
        task_from_args(argparse.Namespace(task="audioset", protocol="linear", name=None, data=None), {})


# --------------------------------------------------------------------------- a toy dataset
# What a new dataset's module would hold (its config type would join ajepa.config.EvalTask):
# clips in one flat folder, named <label>_<n>.wav, split by ensure_splits.


class ToyTask(RootedTask):
    """Toy clips: ``root/<label>_<n>.wav``."""

    task: Literal["toy"] = "toy"
    label_sep: str = "_"


class Toy(DatasetSource):
    spec = TaskSpec(clip_seconds=0.5, target_frames=48, metric="acc")

    def task_source(self, task: ToyTask, data, sample_rate, clip_seconds, skip) -> Source:
        root = needs_root(task)
        files = sorted(root.glob("*.wav"))
        if not files:
            raise DatasetLayoutError(f"no toy clips: expected {root}/<label>{task.label_sep}<n>.wav")
        labels = sorted({f.stem.split(task.label_sep)[0] for f in files})
        records = [ClipRecord(str(f), (labels.index(f.stem.split(task.label_sep)[0]),)) for f in files]
        return Source("toy", ensure_splits(records), labels, False, root)

    def pretrain_source(self, data: DataConfig) -> Source:
        return self.task_source(ToyTask(root=data.root), data, data.sample_rate, None, False).train_only()


@pytest.fixture
def toy_registry(monkeypatch):
    """The registry with the toy dataset added, for this test only."""
    monkeypatch.setattr(sources_base, "SOURCES", dict(SOURCES))
    register(ToyTask)(Toy)
    return sources_base.SOURCES


def test_a_toy_folder_dataset_needs_only_its_module_and_type(toy_registry, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "toy").mkdir()
    for label in ("hum", "tick"):
        for i in range(10):
            soundfile.write(tmp_path / "toy" / f"{label}_{i}.wav", 0.1 * rng.standard_normal(RATE // 4), RATE)
    data = build_task(ToyTask(root=tmp_path / "toy", name="mine"), FrontendConfig(norm="none"), RATE,
                      tmp_path / "cache")
    fold = data.folds[0]
    assert (data.name, data.class_names, data.metric, data.target_frames) == ("mine", ["hum", "tick"], "acc", 48)
    assert data.clip_seconds == 0.5 and (len(fold.train), len(fold.val), len(fold.test)) == (14, 4, 2)
    assert fold.test[0]["spec"].shape == (1, 128, 48) and fold.train.name == "mine/train"
    with pytest.raises(DatasetLayoutError, match="task 'toy' needs root"):
        build_task(ToyTask(), FrontendConfig(norm="none"), RATE, tmp_path / "cache")
    assert "toy" in toy_registry and "toy" not in SOURCES
