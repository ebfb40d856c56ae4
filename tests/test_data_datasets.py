"""The generic clip dataset: item contract, folder/manifest builders, bad files, pickling."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from ajepa.audio.features import Frontend
from ajepa.audio.io import AudioError
from ajepa.config import FrontendConfig
from ajepa.data.datasets import (
    ClipDataset,
    ClipRecord,
    DatasetLayoutError,
    RecordTable,
    WaveArray,
    cap_records,
    folder_records,
    manifest_records,
    validate_records,
)

RATE = 16000


def write_wav(path, seconds=0.3, freq=440.0, rate=RATE, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    soundfile.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)
    return path


def frontend(frames=32):
    return Frontend(FrontendConfig(target_frames=frames), RATE, (-4.0, 4.0))


def test_folder_items_follow_the_contract(tmp_path):
    write_wav(tmp_path / "dog" / "a.wav")
    write_wav(tmp_path / "dog" / "sub" / "b.flac", channels=2)
    write_wav(tmp_path / "cat" / "c.wav", rate=8000)
    (tmp_path / "cat" / "notes.txt").write_text("not audio")
    records, names = folder_records(tmp_path)
    assert names == ["cat", "dog"] and len(records) == 3
    dataset = ClipDataset(records, frontend(), num_classes=2, class_names=names)
    item = dataset[1]
    assert set(item) == {"spec", "label", "index"}
    assert item["spec"].shape == (1, 128, 32) and item["spec"].dtype == torch.float32
    assert item["label"].dtype == torch.long and item["label"].shape == () and item["index"] == 1
    assert [int(dataset[i]["label"]) for i in range(3)] == [0, 1, 1]
    assert dataset.labels.tolist() == [0, 1, 1]


def test_folder_with_split_subfolders(tmp_path):
    write_wav(tmp_path / "train" / "a" / "1.wav")
    write_wav(tmp_path / "train" / "b" / "2.wav")
    write_wav(tmp_path / "test" / "b" / "3.wav")
    records, names = folder_records(tmp_path)
    assert names == ["a", "b"]
    assert sorted((r.split, r.labels) for r in records) == [("test", (1,)), ("train", (0,)), ("train", (1,))]


def test_empty_or_missing_folder_names_the_expected_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"expected .*/<class>/<clip>\.wav"):
        folder_records(tmp_path)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        folder_records(tmp_path / "missing")


def test_manifest_paths_are_relative_to_the_csv(tmp_path):
    write_wav(tmp_path / "data" / "clips" / "x.wav")
    write_wav(tmp_path / "data" / "clips" / "y.wav")
    csv_path = tmp_path / "data" / "list.csv"
    csv_path.write_text("path,label,split\nclips/x.wav,10,train\nclips/y.wav,9,test\n")
    records, names, multilabel = manifest_records(csv_path)
    assert names == ["9", "10"] and not multilabel  # numeric labels sort numerically
    assert records[0] == ClipRecord(str(tmp_path / "data" / "clips" / "x.wav"), (1,), "train")
    assert records[1].split == "test"


def test_multilabel_manifest_gives_multi_hot_targets(tmp_path):
    write_wav(tmp_path / "x.wav")
    (tmp_path / "m.csv").write_text("path,label\nx.wav,speech;music\nx.wav,dog\n")
    records, names, multilabel = manifest_records(tmp_path / "m.csv")
    assert multilabel and names == ["dog", "music", "speech"]
    dataset = ClipDataset(records, frontend(), num_classes=3, multilabel=True, class_names=names)
    assert dataset[0]["label"].tolist() == [0.0, 1.0, 1.0] and dataset[0]["label"].dtype == torch.float32
    assert dataset.labels.tolist() == [[False, True, True], [True, False, False]]


@pytest.mark.parametrize(
    "text, message",
    [("file,label\nx.wav,a\n", "header must have columns path,label"),
     ("path,label\n", "no rows"),
     ("path,label,split\nx.wav,a,holdout\n", r"m\.csv:2: unknown split 'holdout'")],
)
def test_manifest_layout_errors(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DatasetLayoutError, match=message):
        manifest_records(tmp_path / "m.csv")


def test_missing_manifest_names_it(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"manifest .*nope\.csv does not exist"):
        manifest_records(tmp_path / "nope.csv")


def bad_file_records(tmp_path):
    good = write_wav(tmp_path / "good.wav")
    (tmp_path / "broken.wav").write_bytes(b"junk" * 50)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), RATE)
    paths = [good, tmp_path / "broken.wav", tmp_path / "empty.wav", tmp_path / "gone.wav"]
    return [ClipRecord(str(p), (0,)) for p in paths]


def test_bad_files_fail_up_front_naming_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"broken\.wav: unreadable.*3 of 4 files.*skip_bad_files=true"):
        validate_records(bad_file_records(tmp_path), skip_bad_files=False)


def test_skipping_bad_files_counts_them(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ajepa.data"):
        report = validate_records(bad_file_records(tmp_path), skip_bad_files=True, what="fixture")
    assert report.skipped == 3 and [r.path.endswith("good.wav") for r in report.kept] == [True]
    assert {p.rsplit("/", 1)[1] for p, _ in report.bad} == {"broken.wav", "empty.wav", "gone.wav"}
    assert "fixture: skipped 3 of 4 files" in caplog.text


def test_validation_of_many_files_uses_the_pool(tmp_path):
    good = write_wav(tmp_path / "good.wav", seconds=0.05)
    records = [ClipRecord(str(good), (0,))] * 10 + [ClipRecord(str(tmp_path / f"m{i}.wav"), (0,)) for i in range(70)]
    assert validate_records(records, skip_bad_files=True).skipped == 70


def test_a_file_that_breaks_after_validation_is_named_at_load_time(tmp_path):
    path = write_wav(tmp_path / "a.wav")
    dataset = ClipDataset([ClipRecord(str(path), (0,)), ClipRecord(str(path), (0,))], frontend(), num_classes=1)
    path.write_bytes(b"corrupted later")
    with pytest.raises(AudioError, match=r"a\.wav: unreadable.*skip_bad_files"):
        dataset[0]


def test_skipping_at_load_time_substitutes_the_next_clip(tmp_path):
    good = write_wav(tmp_path / "good.wav")
    records = [ClipRecord(str(tmp_path / "gone.wav"), (0,)), ClipRecord(str(good), (1,))]
    dataset = ClipDataset(records, frontend(), num_classes=2, skip_bad_files=True)
    with pytest.warns(RuntimeWarning, match="gone.wav"):
        item = dataset[0]
    assert item["index"] == 1 and int(item["label"]) == 1


def long_clip_dataset(tmp_path, train):
    path = tmp_path / "long.wav"  # noise that gets louder: every crop position looks different
    soundfile.write(path, np.random.default_rng(0).standard_normal(2 * RATE) * np.linspace(0.01, 0.5, 2 * RATE), RATE)
    records = [ClipRecord(str(path), (0,))]
    return ClipDataset(records, frontend(frames=32), num_classes=1, train=train, crop_seed=5)


def test_eval_crop_is_centred_and_stable(tmp_path):
    dataset = long_clip_dataset(tmp_path, train=False)
    raw = dataset.log_mel(0)
    expected = (raw[:, (raw.shape[1] - 32) // 2:][:, :32] + 4.0) / 8.0
    assert torch.allclose(dataset[0]["spec"][0], expected)


def test_training_crop_is_random_but_reproducible_per_step(tmp_path):
    dataset = long_clip_dataset(tmp_path, train=True)
    by_step = [dataset[(step, 0)]["spec"] for step in range(6)]
    assert torch.equal(by_step[2], dataset[(2, 0)]["spec"])
    means = {round(float(s.mean()), 4) for s in by_step}
    assert len(means) >= 4
    torch.manual_seed(0)
    a = dataset[0]["spec"]
    torch.manual_seed(0)
    assert torch.equal(a, dataset[0]["spec"])
    assert dataset.as_training(False).train is False and dataset.train is True


def test_in_memory_waves_slices_and_gain(tmp_path):
    array = (np.random.default_rng(0).standard_normal((3, 8000)) * 3000).astype(np.int16)
    np.save(tmp_path / "w.npy", array)
    waves = WaveArray(8000, path=tmp_path / "w.npy")
    records = [ClipRecord(None, (i,), wave_index=2 - i, gain=0.5) for i in range(3)]
    dataset = ClipDataset(records, frontend(), num_classes=3, waves=waves)
    wave = dataset.wave(0)
    assert wave.shape == (16000,)  # resampled 8 kHz -> 16 kHz
    expected = torch.from_numpy(array[2].astype(np.float32) / 32767.0)
    import torchaudio.functional as F

    assert torch.allclose(wave, 0.5 * F.resample(expected, 8000, 16000), atol=1e-6)
    assert dataset.subset([2, 0]).records[0].wave_index == 0


def test_dataset_pickles_without_its_waves_and_works_in_workers(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((4, 20000), dtype=np.int16) + 100)
    records = [ClipRecord(None, (i % 2,), wave_index=i) for i in range(4)]
    dataset = ClipDataset(records, frontend(), num_classes=2, waves=WaveArray(RATE, path=tmp_path / "w.npy"))
    dataset[0]  # opens the memmap
    assert len(pickle.dumps(dataset)) < 20000  # the 160 kB of audio is not pickled
    loader = DataLoader(dataset, batch_size=2, num_workers=1)
    batches = list(loader)
    assert batches[0]["spec"].shape == (2, 1, 128, 32) and batches[1]["label"].tolist() == [0, 1]


def test_record_table_round_trips_records():
    records = [ClipRecord("/a/ü.wav", (3, 1), "val", 2, -1, 0.5, 1.0, 0.25), ClipRecord(None, (0,), wave_index=7)]
    table = RecordTable(records)
    assert list(table) == records and table.first_labels().tolist() == [3, 0]


def test_cap_records_keeps_every_class():
    records = [ClipRecord(f"{i}.wav", (0 if i < 90 else 1 + i % 3,)) for i in range(100)]
    capped = cap_records(records, 8)
    assert len(capped) == 8 and {r.labels[0] for r in capped} == {0, 1, 2, 3}
    assert cap_records(records, None) == records
