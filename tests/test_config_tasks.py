"""One config type per downstream dataset, and configs saved before that still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ajepa.config import (
    TASK_KINDS,
    AudioSetTask,
    ConfigError,
    ESC50Task,
    SpeechCommandsTask,
    SyntheticTask,
    build_config,
    dump_config,
    load_config,
    parse_task,
)
from ajepa.train.checkpoint import config_differences

ROOT = Path(__file__).parents[1]

#: every field of the flat EvalTask, at its default: what each saved task holds
FLAT_TASK = {"root": None, "manifest": None, "protocol": "linear", "name": None, "clip_seconds": None,
             "target_frames": None, "folds": None, "esc10": False, "classes": 35, "max_clips": None,
             "test_manifest": None, "skip_bad_files": None}


def test_each_task_type_carries_its_own_fields_only():
    assert parse_task({"task": "esc50", "root": "/d", "folds": [1]}) == ESC50Task(root=Path("/d"), folds=[1])
    assert "classes" not in ESC50Task.model_fields and "esc10" not in SpeechCommandsTask.model_fields
    assert "root" not in SyntheticTask.model_fields and "test_manifest" in AudioSetTask.model_fields


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_a_saved_flat_task_loads_as_its_own_type(kind):
    flat = {"task": kind, **FLAT_TASK, "name": "mine"}
    task = parse_task(flat)
    assert task.task == kind and task.name == "mine"
    added_since = {"version", "words"}  # Speech Commands options newer than the flat EvalTask
    assert set(task.model_dump()) - added_since <= set(flat)
    assert set(task.model_dump()) == set(type(task).model_fields)


def test_a_saved_flat_run_config_loads_and_matches_the_current_one():
    cfg = load_config(ROOT / "experiments" / "paper_vitb.yaml")
    saved = dump_config(cfg)
    saved["eval"]["tasks"] = [{**FLAT_TASK, **task} for task in saved["eval"]["tasks"]]
    assert saved["eval"]["tasks"][1]["classes"] == 35 and saved["eval"]["tasks"][1]["task"] == "esc50"
    reloaded = build_config(yaml.safe_load(yaml.safe_dump(saved)), source="run config.yaml")
    assert dump_config(reloaded) == dump_config(cfg)
    assert config_differences(saved, cfg) == []  # a resume from such a checkpoint sees no change


@pytest.mark.parametrize("task, key", [
    ({"task": "speechcommands", "root": "/d", "esc10": True}, "esc10"),
    ({"task": "esc50", "root": "/d", "classes": 12}, "classes"),
    ({"task": "synthetic", "root": "/d"}, "root"),
    ({"task": "folder", "root": "/d", "test_manifest": "/t.csv"}, "test_manifest"),
])
def test_a_set_field_of_another_dataset_is_refused_by_name(task, key):
    with pytest.raises(ConfigError, match=rf"eval\.tasks\.0\.{key}: not a parameter of task '{task['task']}'"):
        build_config({"eval": {"tasks": [task]}})


def test_unknown_task_and_typos_are_named():
    with pytest.raises(ConfigError, match=r"eval\.tasks\.0(?=.*'esc51')(?=.*'esc50')"):
        build_config({"eval": {"tasks": [{"task": "esc51"}]}})
    with pytest.raises(ConfigError, match=r"eval\.tasks\.0\.fold: not a parameter of task .esc50."):
        build_config({"eval": {"tasks": [{"task": "esc50", "fold": [1]}]}})
    # 'synthetic' is a task and a data section: a typo in the section keeps its path
    with pytest.raises(ConfigError, match=r"data\.synthetic\.num_clip: unknown key"):
        build_config({"data": {"synthetic": {"num_clip": 3}}})


def test_data_kind_needs_its_location():
    with pytest.raises(ConfigError, match=r"data\.root is required for data\.kind='esc50'"):
        build_config({"data": {"kind": "esc50"}})
    with pytest.raises(ConfigError, match=r"data\.manifest \(or data\.root\) is required for data\.kind='audioset'"):
        build_config({"data": {"kind": "audioset"}})


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_experiments_still_load(path):
    assert load_config(path).name
