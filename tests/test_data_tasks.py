"""Downstream tasks in their real on-disk layouts (small fixtures), and pretraining data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ajepa.audio.io import AudioError
from ajepa.config import DataConfig, FrontendConfig, SyntheticTask, load_config, parse_task
from ajepa.data.datasets import DatasetLayoutError
from ajepa.data.tasks import (
    SPEECH_COMMANDS_10,
    SPEECH_COMMANDS_WORDS,
    build_pretrain_dataset,
    build_task,
    pretrain_stats_location,
)

RATE = 16000
FRONTEND = FrontendConfig(norm="preset")


def write_wav(path: Path, seconds: float = 0.05, seed: int = 0, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate)), rate)
    return path


def task(kind: str, tmp_path: Path, **fields) -> object:
    return build_task(parse_task({"task": kind, **fields}), FRONTEND, RATE, tmp_path / "cache")


# --------------------------------------------------------------------------- ESC-50

ESC_CLASSES = [(0, "dog", True), (1, "rooster", True), (5, "cat", False)]


@pytest.fixture
def esc50(tmp_path):
    root = tmp_path / "ESC-50-master"
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, category, esc10 in ESC_CLASSES:
            name = f"{fold}-{1000 + target}-A-{target}.wav"
            write_wav(root / "audio" / name, seed=fold * 10 + target)
            rows.append(f"{name},{fold},{target},{category},{esc10},{fold}{1000 + target},A")  # one source per clip
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def test_esc50_has_five_folds_each_testing_one_fold(esc50, tmp_path):
    data = task("esc50", tmp_path, root=esc50)
    assert (data.name, data.num_classes, data.multilabel, data.metric) == ("esc50", 3, False, "acc")
    assert data.class_names == ["dog", "rooster", "cat"] and data.target_frames == 512 and data.clip_seconds == 5.0
    assert [f.name for f in data.folds] == [f"fold{k}" for k in range(1, 6)]
    everything = {f"{fold}-{1000 + t}-A-{t}.wav" for fold in range(1, 6) for t, _, _ in ESC_CLASSES}
    for k, fold in enumerate(data.folds, start=1):
        test_files = {Path(r.path).name for r in fold.test.records}
        train_files = {Path(r.path).name for r in fold.train.records}
        assert all(name.startswith(f"{k}-") for name in test_files) and len(test_files) == 3
        assert not any(name.startswith(f"{k}-") for name in train_files) and len(train_files) == 12
        assert test_files | train_files == everything
        assert fold.val is None and not fold.train.train and not fold.test.train  # centre crop everywhere
        # src_file travels with each clip, so validation carving keeps a recording on one side
        assert sorted(fold.train.groups) == sorted(f"{f}{1000 + t}" for f in range(1, 6) if f != k for t, _, _ in ESC_CLASSES)
    item = data.folds[0].test[2]
    assert item["spec"].shape == (1, 128, 512) and int(item["label"]) == 2


def test_esc10_subset_and_fold_selection(esc50, tmp_path):
    data = task("esc50", tmp_path, root=esc50, esc10=True, folds=[2, 4], target_frames=64)
    assert data.class_names == ["dog", "rooster"] and data.num_classes == 2
    assert [f.name for f in data.folds] == ["fold2", "fold4"] and data.target_frames == 64
    assert len(data.folds[0].train) == 8 and sorted(data.folds[0].test.labels.tolist()) == [0, 1]


def test_esc50_wrong_layouts_name_the_expected_path(esc50, tmp_path):
    (esc50 / "audio" / "3-1005-A-5.wav").unlink()
    with pytest.raises(AudioError, match=r"audio/3-1005-A-5\.wav: file not found"):
        task("esc50", tmp_path, root=esc50)
    skipped = task("esc50", tmp_path, root=esc50, skip_bad_files=True)
    assert skipped.skipped == 1 and len(skipped.folds[2].test) == 2
    (esc50 / "meta" / "esc50.csv").write_text("filename,fold,target\n")
    with pytest.raises(DatasetLayoutError, match=r"esc50\.csv: missing columns \['category'"):
        task("esc50", tmp_path, root=esc50)
    with pytest.raises(DatasetLayoutError, match=r"expected .*elsewhere/meta/esc50\.csv"):
        task("esc50", tmp_path, root=tmp_path / "elsewhere")


# --------------------------------------------------------------------------- Speech Commands V2


@pytest.fixture
def speech_commands(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    val, test = [], []
    for i, word in enumerate(SPEECH_COMMANDS_WORDS):
        for speaker, listing in (("0a1b2c3d", None), ("1f2e3d4c", val), ("9a8b7c6d", test)):
            write_wav(root / word / f"{speaker}_nohash_0.wav", seed=i)
            if listing is not None:
                listing.append(f"{word}/{speaker}_nohash_0.wav")
    write_wav(root / "_background_noise_" / "white_noise.wav", seconds=12.0)
    write_wav(root / "_background_noise_" / "pink_noise.wav", seconds=2.0, seed=1)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "LICENSE").write_text("cc-by")
    return root


def test_speech_commands_35_words_use_the_official_lists(speech_commands, tmp_path):
    data = task("speechcommands", tmp_path, root=speech_commands)
    assert data.num_classes == 35 and data.class_names == list(SPEECH_COMMANDS_WORDS)
    assert data.target_frames == 128 and data.clip_seconds == 1.0
    fold = data.folds[0]
    assert (len(fold.train), len(fold.val), len(fold.test)) == (35, 35, 35)
    assert {Path(r.path).name for r in fold.val.records} == {"1f2e3d4c_nohash_0.wav"}
    assert {Path(r.path).name for r in fold.test.records} == {"9a8b7c6d_nohash_0.wav"}
    assert not any("_background_noise_" in r.path for r in fold.train.records)
    item = fold.test[SPEECH_COMMANDS_WORDS.index("yes")]
    assert item["spec"].shape == (1, 128, 128) and int(item["label"]) == SPEECH_COMMANDS_WORDS.index("yes")


def test_speech_commands_12_classes_add_unknown_and_silence(speech_commands, tmp_path):
    data = task("speechcommands", tmp_path, root=speech_commands, classes=12)
    assert data.class_names == [*SPEECH_COMMANDS_10, "_unknown_", "_silence_"]
    for split in ("train", "val", "test"):
        dataset = getattr(data.folds[0], split)
        labels = dataset.labels.tolist()
        assert sorted(set(labels)) == list(range(12)), split
        assert labels.count(10) == 1 and labels.count(11) == 1  # 10 % of 10 word clips, rounded up
        silence = [r for r in dataset.records if r.labels == (11,)]
        assert all("_background_noise_" in r.path and r.duration == 1.0 for r in silence)
        unknown = [r for r in dataset.records if r.labels == (10,)]
        assert all(Path(r.path).parent.name not in SPEECH_COMMANDS_10 for r in unknown)
    train_silence = [r for r in data.folds[0].train.records if r.labels == (11,)][0]
    assert train_silence.start + 1.0 <= 0.8 * 12.0 + 1e-6  # train slices come from the first 80 %
    item = data.folds[0].train[data.folds[0].train.labels.tolist().index(11)]
    assert item["spec"].shape == (1, 128, 128) and torch.isfinite(item["spec"]).all()


def test_speech_commands_wrong_layouts(speech_commands, tmp_path):
    (speech_commands / "testing_list.txt").write_text("yes/ghost_nohash_0.wav\n")
    with pytest.raises(DatasetLayoutError, match=r"expected .*yes/ghost_nohash_0\.wav"):
        task("speechcommands", tmp_path, root=speech_commands)
    (speech_commands / "testing_list.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"expected .*testing_list\.txt"):
        task("speechcommands", tmp_path, root=speech_commands)
    (speech_commands / "testing_list.txt").write_text("")
    for f in (speech_commands / "wow").iterdir():
        f.unlink()
    (speech_commands / "wow").rmdir()
    with pytest.raises(DatasetLayoutError, match=r"expected .*/wow/"):
        task("speechcommands", tmp_path, root=speech_commands)


def test_speech_commands_12_needs_background_noise(speech_commands, tmp_path):
    for f in (speech_commands / "_background_noise_").iterdir():
        f.unlink()
    with pytest.raises(DatasetLayoutError, match=r"expected .*_background_noise_/\*\.wav"):
        task("speechcommands", tmp_path, root=speech_commands, classes=12)


# --------------------------------------------------------------------------- AudioSet

SEGMENTS_HEADER = ("# Segments csv created Sun Mar  5 10:54:31 2017\n"
                   "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
                   "# YTID, start_seconds, end_seconds, positive_labels\n")


@pytest.fixture
def audioset(tmp_path):
    root = tmp_path / "audioset"
    root.mkdir()
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/04rlf,"Music"\n2,/m/0bt9lr,"Dog, bark"\n'
    )
    (root / "balanced_train_segments.csv").write_text(
        SEGMENTS_HEADER + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"\n'
        'Y0abcdefghi, 0.000, 10.000, "/m/0bt9lr"\n'
        "-0DdlOuIFUI, 50.000, 60.000, \"/m/04rlf\"\n"
    )
    (root / "eval_segments.csv").write_text(SEGMENTS_HEADER + 'zzzzzzzzzzz, 0.000, 10.000, "/m/0bt9lr,/m/09x0r"\n')
    write_wav(root / "audios" / "balanced_train_segments" / "Y--PJHxphWEs.wav")
    write_wav(root / "audios" / "balanced_train_segments" / "Y0abcdefghi.wav", seed=1)  # YTID itself starts with Y
    write_wav(root / "audios" / "balanced_train_segments" / "-0DdlOuIFUI.flac", seed=2)
    write_wav(root / "audios" / "eval_segments" / "part00" / "Yzzzzzzzzzzz.wav", seed=3)
    return root


def test_audioset_segments_layout_is_multilabel(audioset, tmp_path):
    data = task("audioset", tmp_path, root=audioset, target_frames=32)
    assert (data.num_classes, data.multilabel, data.metric) == (3, True, "map")
    assert data.class_names == ["Speech", "Music", "Dog, bark"]
    fold = data.folds[0]
    assert len(fold.train) == 3 and len(fold.test) == 1 and fold.val is None
    assert fold.train.labels.tolist() == [[True, True, False], [False, False, True], [False, True, False]]
    item = fold.test[0]
    assert item["label"].tolist() == [1.0, 0.0, 1.0] and item["spec"].shape == (1, 128, 32)


def test_audioset_missing_clips_are_an_error_unless_skipped(audioset, tmp_path):
    (audioset / "audios" / "balanced_train_segments" / "Y--PJHxphWEs.wav").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 AudioSet segments have no clip.*Y--PJHxphWEs\.wav.*skip_bad_files"):
        task("audioset", tmp_path, root=audioset)
    data = task("audioset", tmp_path, root=audioset, skip_bad_files=True)
    assert data.skipped == 1 and len(data.folds[0].train) == 2


def test_audioset_clip_names_with_segment_times_are_found(audioset, tmp_path):
    clips = audioset / "audios" / "balanced_train_segments"
    (clips / "Y--PJHxphWEs.wav").rename(clips / "Y--PJHxphWEs_30.000_40.000.wav")  # audioset-dl style
    (clips / "-0DdlOuIFUI.flac").rename(clips / "-0DdlOuIFUI_50000_60000.flac")    # times in ms
    (clips / "Y0abcdefghi.wav").rename(clips / "Y0abcdefghi_0_10.wav")              # whole seconds
    train = task("audioset", tmp_path, root=audioset).folds[0].train
    assert sorted(Path(r.path).name for r in train.records) == [
        "-0DdlOuIFUI_50000_60000.flac", "Y--PJHxphWEs_30.000_40.000.wav", "Y0abcdefghi_0_10.wav"]


def test_audioset_json_manifest(audioset, tmp_path):
    manifest = {"data": [{"wav": "audios/balanced_train_segments/Y--PJHxphWEs.wav", "labels": "/m/09x0r"},
                         {"wav": str(audioset / "audios/balanced_train_segments/-0DdlOuIFUI.flac"),
                          "labels": "/m/04rlf,/m/0bt9lr"}]}
    (audioset / "train.json").write_text(json.dumps(manifest))
    data = task("audioset", tmp_path, root=audioset, manifest=audioset / "train.json")
    assert data.folds[0].train.labels.tolist() == [[True, False, False], [False, True, True]]
    (audioset / "bad.json").write_text(json.dumps({"data": [{"wav": "x.wav", "labels": "/m/unknown"}]}))
    with pytest.raises(DatasetLayoutError, match=r"'/m/unknown' is not in class_labels_indices\.csv"):
        task("audioset", tmp_path, root=audioset, manifest=audioset / "bad.json")


def test_audioset_wrong_layouts(audioset, tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"expected .*nothere/balanced_train_segments\.csv"):
        task("audioset", tmp_path, root=tmp_path / "nothere")
    (audioset / "class_labels_indices.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"class index not found: expected .*class_labels_indices\.csv"):
        task("audioset", tmp_path, root=audioset)


# --------------------------------------------------------------------------- generic and synthetic


def test_folder_task_gets_a_stratified_split(tmp_path):
    for label in ("a", "b"):
        for i in range(10):
            write_wav(tmp_path / "clips" / label / f"{i}.wav", seed=i)
    data = task("folder", tmp_path, root=tmp_path / "clips", clip_seconds=0.6)
    fold = data.folds[0]
    assert (len(fold.train), len(fold.val), len(fold.test)) == (14, 4, 2)
    assert data.target_frames == 64  # 0.6 s -> 58 frames, rounded up to a 16-frame patch
    paths = [{r.path for r in d.records} for d in (fold.train, fold.val, fold.test)]
    assert not (paths[0] & paths[1]) and not (paths[0] & paths[2]) and not (paths[1] & paths[2])


def test_manifest_task_and_max_clips(tmp_path):
    for i in range(6):
        write_wav(tmp_path / f"{i}.wav", seed=i)
    rows = [f"{i}.wav,{'x' if i % 2 else 'y'},{'test' if i >= 4 else 'train'}" for i in range(6)]
    (tmp_path / "list.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    data = task("manifest", tmp_path, manifest=tmp_path / "list.csv", max_clips=2, name="mine")
    assert data.name == "mine" and data.class_names == ["x", "y"]
    assert len(data.folds[0].train) == 2 and sorted(data.folds[0].train.labels.tolist()) == [0, 1]
    assert data.folds[0].val is None and len(data.folds[0].test) == 2
    with pytest.raises(DatasetLayoutError, match="needs manifest"):
        task("manifest", tmp_path, root=tmp_path)


def test_synthetic_task_reuses_the_pretraining_set(tmp_path):
    data_cfg = DataConfig(clip_seconds=0.5, cache_dir=tmp_path / "cache", synthetic={"num_clips": 40})
    frontend = FrontendConfig(target_frames=48)
    data = build_task(SyntheticTask(), frontend, RATE, tmp_path / "cache", data=data_cfg)
    fold = data.folds[0]
    assert data.num_classes == 12 and data.target_frames == 48 and data.clip_seconds == 0.5
    assert len(fold.train) + len(fold.val) + len(fold.test) == 40
    assert fold.test[0]["spec"].shape == (1, 128, 48) and not fold.train.train
    cfg = load_config(None, {"data": data_cfg.model_dump(), "frontend": {"target_frames": 48},
                             "optim": {"steps": 10, "warmup": 1}})
    pretrain = build_pretrain_dataset(cfg)
    assert pretrain.train and len(pretrain) == len(fold.train)
    assert [r.wave_index for r in pretrain.records] == [r.wave_index for r in fold.train.records]


def test_pretraining_esc50_uses_every_fold_and_random_crops(esc50, tmp_path):
    cfg = load_config(None, {"data": {"kind": "esc50", "root": str(esc50), "cache_dir": str(tmp_path / "cache")},
                             "frontend": {"target_frames": 64},
                             "optim": {"steps": 10, "warmup": 1}})
    dataset = build_pretrain_dataset(cfg)
    assert len(dataset) == 15 and dataset.train and dataset[(0, 3)]["spec"].shape == (1, 128, 64)


def test_pretraining_speech_commands_uses_the_train_split(speech_commands, tmp_path):
    cfg = load_config(None, {"data": {"kind": "speechcommands", "root": str(speech_commands), "crop": "center",
                                      "cache_dir": str(tmp_path / "cache")},
                             "optim": {"steps": 10, "warmup": 1}})
    dataset = build_pretrain_dataset(cfg)
    assert len(dataset) == 35 and not dataset.train
    assert {Path(r.path).name for r in dataset.records} == {"0a1b2c3d_nohash_0.wav"}


def test_pretraining_audioset_defaults_to_the_unbalanced_then_balanced_list(audioset, tmp_path):
    cfg = load_config(None, {"data": {"kind": "audioset", "root": str(audioset), "cache_dir": str(tmp_path / "cache")},
                             "optim": {"steps": 10, "warmup": 1}})
    dataset = build_pretrain_dataset(cfg)
    assert len(dataset) == 3 and dataset.multilabel and dataset[0]["spec"].shape == (1, 128, 1024)


def test_dataset_norm_for_real_data_asks_for_ajepa_stats(esc50, tmp_path):
    cfg = load_config(None, {"data": {"kind": "esc50", "root": str(esc50), "cache_dir": str(tmp_path / "cache")},
                             "frontend": {"norm": "dataset"},
                             "optim": {"steps": 10, "warmup": 1}})
    with pytest.raises(ValueError, match=rf"{esc50}/stats\.json.*ajepa-stats CONFIG"):
        build_pretrain_dataset(cfg)


def test_pretraining_manifest_takes_its_train_rows(tmp_path):
    for i in range(4):
        write_wav(tmp_path / "m" / f"{i}.wav", seed=i)
    (tmp_path / "m" / "list.csv").write_text("path,label,split\n0.wav,a,train\n1.wav,b,train\n2.wav,a,test\n3.wav,b,val\n")
    for data in ({"kind": "manifest", "manifest": str(tmp_path / "m" / "list.csv")},
                 {"kind": "manifest", "root": str(tmp_path / "m" / "list.csv")}):
        cfg = load_config(None, {"data": {**data, "cache_dir": str(tmp_path / "cache")},
                                 "optim": {"steps": 10, "warmup": 1}})
        dataset = build_pretrain_dataset(cfg)
        assert [Path(r.path).name for r in dataset.records] == ["0.wav", "1.wav"]
        assert pretrain_stats_location(cfg.data) == tmp_path / "m"
    cfg = load_config(None, {"data": {"kind": "manifest", "root": str(tmp_path / "m")}, "optim": {"steps": 10, "warmup": 1}})
    with pytest.raises(DatasetLayoutError, match="needs data.manifest"):
        build_pretrain_dataset(cfg)
