"""The log-mel feature cache: keys, invalidation, agreement with the uncached path, workers."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

import ajepa.data.feature_cache as fc
from ajepa.audio.features import Frontend
from ajepa.audio.io import AudioError
from ajepa.config import ESC50Task, FrontendConfig, load_config
from ajepa.data.datasets import ClipDataset, ClipRecord, WaveArray
from ajepa.data.feature_cache import build_feature_cache, settings_folder
from ajepa.data.tasks import build_pretrain_dataset, build_task

RATE = 16000
STATS = (-4.0, 4.0)
# float16 keeps 11 significant bits: |error| <= 2^-11 |log-mel|, i.e. < 0.008 for |log-mel| < 16,
# and < 0.001 after normalising with 2 * std = 8.
RAW_TOL = dict(rtol=2.0 ** -11, atol=1e-6)
NORM_TOL = dict(rtol=0, atol=1e-3)


def write_noise(path: Path, seconds: float = 0.6, seed: int = 0, rate: int = RATE) -> Path:
    """Noise that gets louder over the clip, so every crop position looks different."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * rate)
    wave = np.random.default_rng(seed).standard_normal(n) * np.linspace(0.01, 0.5, n)
    soundfile.write(path, wave.astype(np.float32), rate, subtype="PCM_16")
    return path


def clips(tmp_path: Path, count: int = 4, **kwargs) -> list[ClipRecord]:
    return [ClipRecord(str(write_noise(tmp_path / "audio" / f"{i}.wav", seed=i, **kwargs)), (i % 2,))
            for i in range(count)]


def dataset_of(records, train=True, frames=32, skip=False, waves=None, **frontend):
    return ClipDataset(records, Frontend(FrontendConfig(target_frames=frames, **frontend), RATE, STATS),
                       num_classes=2, train=train, crop_seed=3, skip_bad_files=skip, waves=waves)


def cached(dataset: ClipDataset, cache_dir: Path, **kwargs) -> ClipDataset:
    return dataset.with_features(build_feature_cache(dataset, cache_dir, progress=False, **kwargs))


def entry_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in (cache_dir / "features").rglob("*.npy"))


class CountWrites:
    def __init__(self, monkeypatch):
        self.count = 0
        original = fc.write_entry

        def counting(path, log_mel):
            self.count += 1
            original(path, log_mel)

        monkeypatch.setattr(fc, "write_entry", counting)


# --------------------------------------------------------------------------- agreement


def test_cached_items_equal_uncached_ones_up_to_float16(tmp_path):
    plain = dataset_of(clips(tmp_path))
    fast = cached(plain, tmp_path / "cache")
    assert fast.features is not None and fast.features.present.all()
    for step in range(3):
        for index in range(len(plain)):
            a, b = plain[(step, index)], fast[(step, index)]
            assert b["spec"].dtype == torch.float32 and b["spec"].shape == (1, 128, 32)
            assert b["spec"].is_contiguous() and b["index"] == a["index"] and int(b["label"]) == int(a["label"])
            torch.testing.assert_close(b["spec"], a["spec"], **NORM_TOL)  # same crop start, fp16 rounding only
    centred_plain, centred_fast = plain.as_training(False), fast.as_training(False)
    torch.testing.assert_close(centred_fast[1]["spec"], centred_plain[1]["spec"], **NORM_TOL)
    torch.testing.assert_close(fast.log_mel(2), plain.log_mel(2), **RAW_TOL)
    assert fast.log_mel(2).dtype == torch.float32


def test_random_crop_stays_a_function_of_seed_step_and_index(tmp_path):
    fast = cached(dataset_of(clips(tmp_path, count=2)), tmp_path / "cache")
    by_step = [fast[(step, 0)]["spec"] for step in range(6)]
    assert torch.equal(by_step[4], fast[(4, 0)]["spec"])
    assert len({round(float(s.mean()), 4) for s in by_step}) >= 4  # crops move with the step
    # a plain index draws from the global RNG, as without the cache
    torch.manual_seed(0)
    first = fast[0]["spec"]
    torch.manual_seed(0)
    assert torch.equal(first, fast[0]["spec"])


def test_short_clips_are_padded_like_uncached_ones(tmp_path):
    plain = dataset_of(clips(tmp_path, count=2, seconds=0.2), frames=64)  # 18 frames -> padded to 64
    fast = cached(plain, tmp_path / "cache")
    torch.testing.assert_close(fast[(0, 1)]["spec"], plain[(0, 1)]["spec"], **NORM_TOL)
    assert torch.equal(fast[(0, 1)]["spec"][..., 30:], plain[(0, 1)]["spec"][..., 30:])  # the padding is exact


def test_in_memory_waves_slices_and_gain(tmp_path):
    array = (np.random.default_rng(0).standard_normal((3, 8000)) * 3000).astype(np.int16)
    np.save(tmp_path / "w.npy", array)
    waves = WaveArray(8000, path=tmp_path / "w.npy")
    records = [ClipRecord(None, (0,), wave_index=2, gain=0.5), ClipRecord(None, (1,), wave_index=2),
               ClipRecord(None, (1,), wave_index=0)]
    plain = dataset_of(records, waves=waves)
    fast = cached(plain, tmp_path / "cache")
    assert len(set(map(bytes, fast.features.keys))) == 3  # the gain makes its own entry
    for index in range(3):
        torch.testing.assert_close(fast[(1, index)]["spec"], plain[(1, index)]["spec"], **NORM_TOL)


# --------------------------------------------------------------------------- keys and invalidation


def test_rewriting_a_file_with_other_audio_of_the_same_size_invalidates(tmp_path):
    records = clips(tmp_path, count=2)
    path = Path(records[0].path)
    before = cached(dataset_of(records), tmp_path / "cache")
    size = path.stat().st_size
    write_noise(path, seed=99)  # same length and format, other samples
    assert path.stat().st_size == size
    plain = dataset_of(records)
    after = cached(plain, tmp_path / "cache")
    assert bytes(after.features.keys[0]) != bytes(before.features.keys[0])
    assert bytes(after.features.keys[1]) == bytes(before.features.keys[1])
    torch.testing.assert_close(after.log_mel(0), plain.log_mel(0), **RAW_TOL)
    assert not torch.allclose(after.log_mel(0), before.log_mel(0), atol=0.1)


def test_unchanged_files_are_not_reread_but_a_rewrite_is_seen(tmp_path, monkeypatch):
    """Trusted digests (files older than RACY_SECONDS) skip the read; any write changes the
    file's ctime, so it is read again even when size and mtime are forged back."""
    monkeypatch.setattr(fc, "RACY_SECONDS", 0.0)
    records = clips(tmp_path, count=3)
    cache_dir = tmp_path / "cache"
    cached(dataset_of(records), cache_dir)
    reads = []
    original = fc.file_digest
    monkeypatch.setattr(fc, "file_digest", lambda path: reads.append(path) or original(path))
    cached(dataset_of(records), cache_dir)
    assert reads == []
    path = Path(records[1].path)
    stat = path.stat()
    time.sleep(0.02)
    write_noise(path, seed=42)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # e.g. cp -p / rsync -t keep the old mtime
    plain = dataset_of(records)
    after = cached(plain, cache_dir)
    assert reads == [str(path)]
    torch.testing.assert_close(after.log_mel(1), plain.log_mel(1), **RAW_TOL)


def test_recently_written_files_are_always_reread(tmp_path, monkeypatch):
    records = clips(tmp_path, count=2)  # just written: within RACY_SECONDS of the first read
    cached(dataset_of(records), tmp_path / "cache")
    reads = []
    original = fc.file_digest
    monkeypatch.setattr(fc, "file_digest", lambda path: reads.append(path) or original(path))
    cached(dataset_of(records), tmp_path / "cache")
    assert len(reads) == 2


@pytest.mark.parametrize("setting", [{"num_mel_bins": 64}, {"frame_shift_ms": 12.0}, {"frame_length_ms": 20.0},
                                     {"window_type": "hamming"}, {"htk_compat": False}])
def test_frontend_settings_that_shape_the_features_get_their_own_entries(tmp_path, monkeypatch, setting):
    records = clips(tmp_path, count=2)
    base = cached(dataset_of(records), tmp_path / "cache")
    writes = CountWrites(monkeypatch)
    plain = dataset_of(records, **setting)
    other = cached(plain, tmp_path / "cache")
    assert writes.count == 2 and other.features.folder != base.features.folder
    torch.testing.assert_close(other[(0, 1)]["spec"], plain[(0, 1)]["spec"], **NORM_TOL)


def test_sample_rate_slices_and_gain_are_part_of_the_key(tmp_path):
    record = clips(tmp_path, count=1)[0]
    frontend = Frontend(FrontendConfig(target_frames=32), RATE, STATS)
    assert settings_folder(tmp_path, frontend) != settings_folder(tmp_path, Frontend(frontend.cfg, 8000, STATS))
    variants = [record, ClipRecord(record.path, (0,), start=0.1), ClipRecord(record.path, (0,), duration=0.3),
                ClipRecord(record.path, (0,), gain=0.5), ClipRecord(record.path, (1,), split="test")]
    fast = cached(dataset_of(variants), tmp_path / "cache")
    keys = [bytes(k) for k in fast.features.keys]
    assert len(set(keys[:4])) == 4 and keys[4] == keys[0]  # labels and splits do not matter
    plain = dataset_of(variants)
    for index in range(4):
        torch.testing.assert_close(fast.log_mel(index), plain.log_mel(index), **RAW_TOL)


def test_settings_applied_after_the_cache_reuse_it(tmp_path, monkeypatch):
    records = clips(tmp_path, count=3)
    first = cached(dataset_of(records), tmp_path / "cache")
    writes = CountWrites(monkeypatch)
    for variant in (dataset_of(records, frames=48), dataset_of(records, train=False),
                    ClipDataset(records, Frontend(FrontendConfig(target_frames=16, norm="none"), RATE, None),
                                num_classes=2)):
        again = cached(variant, tmp_path / "cache")
        assert again.features.folder == first.features.folder
        assert np.array_equal(again.features.keys, first.features.keys)
    assert writes.count == 0 and len(entry_files(tmp_path / "cache")) == 3


def test_dither_bypasses_the_cache(tmp_path):
    dataset = dataset_of(clips(tmp_path, count=2), dither=1.0)
    assert build_feature_cache(dataset, tmp_path / "cache", progress=False) is None
    cfg = load_config(None, {"data": {"kind": "folder", "root": str(tmp_path / "tree"), "cache_dir": str(tmp_path / "c")},
                             "frontend": {"dither": 1.0, "target_frames": 32}, "optim": {"steps": 2, "warmup": 1}})
    for label in ("a", "b"):
        write_noise(tmp_path / "tree" / label / "x.wav")
    assert build_pretrain_dataset(cfg).features is None and not (tmp_path / "c" / "features").exists()


# --------------------------------------------------------------------------- bad files, damage


def write_late_nan(path: Path) -> Path:
    """A float WAV whose header and first block are fine and whose tail is NaN."""
    wave = np.full(RATE // 2, 0.1, dtype=np.float32)
    wave[4000:] = np.nan
    soundfile.write(path, wave, RATE, subtype="FLOAT")
    return path


def test_a_clip_that_fails_to_decode_fails_the_build_naming_it(tmp_path):
    records = clips(tmp_path, count=2)
    records[1] = ClipRecord(str(write_late_nan(tmp_path / "audio" / "late.wav")), (1,))
    with pytest.raises(AudioError, match=r"late\.wav: non-finite audio.*skip_bad_files"):
        build_feature_cache(dataset_of(records), tmp_path / "cache", progress=False)


def test_skipped_bad_clips_stay_uncached_and_are_replaced_as_before(tmp_path, caplog):
    records = clips(tmp_path, count=3)
    records[1] = ClipRecord(str(write_late_nan(tmp_path / "audio" / "late.wav")), (1,))
    fast = cached(dataset_of(records, skip=True), tmp_path / "cache")
    assert fast.features.present.tolist() == [True, False, True]
    assert "could not be decoded" in caplog.text
    with pytest.warns(RuntimeWarning, match="late.wav"):
        item = fast[(0, 1)]
    plain = dataset_of(records, skip=True)
    with pytest.warns(RuntimeWarning, match="late.wav"):
        expected = plain[(0, 1)]
    assert item["index"] == 2 == expected["index"]
    torch.testing.assert_close(item["spec"], expected["spec"], **NORM_TOL)


def test_a_vanished_entry_falls_back_to_the_audio(tmp_path):
    records = clips(tmp_path, count=2)
    plain = dataset_of(records)
    fast = cached(plain, tmp_path / "cache")
    os.unlink(fast.features.entry_path(0))
    with pytest.warns(RuntimeWarning, match="computing from the audio"):
        item = fast[(0, 0)]
    assert torch.equal(item["spec"], plain[(0, 0)]["spec"])


# --------------------------------------------------------------------------- workers and processes


def test_cached_dataset_pickles_small_and_reads_in_workers(tmp_path):
    fast = cached(dataset_of(clips(tmp_path, count=4)), tmp_path / "cache")
    assert len(pickle.dumps(fast.features)) < 2000  # keys, not features
    clone = pickle.loads(pickle.dumps(fast))  # what a spawned worker receives
    items = [(step, i) for step in range(2) for i in range(4)]
    single = [fast[key]["spec"] for key in items]
    for dataset in (fast, clone):
        loader = DataLoader(dataset, sampler=items, batch_size=None, num_workers=2, generator=torch.Generator())
        for a, b in zip(single, loader, strict=True):
            assert torch.equal(a, b["spec"])


def test_the_build_runs_in_dataloader_workers(tmp_path):
    records = clips(tmp_path, count=4)
    in_workers = cached(dataset_of(records), tmp_path / "a", num_workers=2)
    in_process = cached(dataset_of(records), tmp_path / "b")
    assert np.array_equal(in_workers.features.keys, in_process.features.keys)
    for index in range(4):
        assert torch.equal(in_workers.log_mel(index), in_process.log_mel(index))


def _build_in_child(records, cache_dir, queue):
    try:
        cache = build_feature_cache(dataset_of(records), cache_dir, progress=False)
        queue.put(int(cache.present.sum()))
    except BaseException as err:  # pragma: no cover - reported to the parent
        queue.put(repr(err))


def test_two_processes_building_at_once_both_succeed(tmp_path):
    records = clips(tmp_path, count=6)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_build_in_child, args=(records, tmp_path / "cache", queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert results == [6, 6]
    assert len(entry_files(tmp_path / "cache")) == 6
    assert not [p for p in (tmp_path / "cache").rglob("*") if ".tmp" in p.name]
    plain = dataset_of(records)
    fast = cached(plain, tmp_path / "cache")
    for index in range(6):
        torch.testing.assert_close(fast.log_mel(index), plain.log_mel(index), **RAW_TOL)


# --------------------------------------------------------------------------- pretraining and tasks


def test_pretraining_dataset_uses_the_cache_and_matches_without_it(tmp_path):
    for label in ("a", "b"):
        for i in range(3):
            write_noise(tmp_path / "tree" / label / f"{i}.wav", seed=i + 10 * (label == "b"))
    overrides = {"data": {"kind": "folder", "root": str(tmp_path / "tree"), "cache_dir": str(tmp_path / "c")},
                 "frontend": {"target_frames": 32, "norm": "preset"}, "optim": {"steps": 2, "warmup": 1}}
    fast = build_pretrain_dataset(load_config(None, overrides))
    overrides["data"]["feature_cache"] = False
    plain = build_pretrain_dataset(load_config(None, overrides))
    assert fast.features is not None and fast.features.present.all() and plain.features is None
    for key in [(0, 0), (5, 3), (7, 5)]:
        torch.testing.assert_close(fast[key]["spec"], plain[key]["spec"], **NORM_TOL)


def test_synthetic_pretraining_and_its_first_use_stats_read_the_cache(tmp_path):
    overrides = {"data": {"clip_seconds": 0.5, "cache_dir": str(tmp_path), "synthetic": {"num_clips": 24}},
                 "frontend": {"target_frames": 32, "norm": "dataset"}, "optim": {"steps": 2, "warmup": 1}}
    fast = build_pretrain_dataset(load_config(None, overrides))
    assert fast.features is not None and fast.features.present.all()
    overrides["data"]["feature_cache"] = False
    plain = build_pretrain_dataset(load_config(None, overrides))
    assert fast.frontend.stats == plain.frontend.stats  # the stats.json written on first use is shared
    torch.testing.assert_close(fast[(3, 4)]["spec"], plain[(3, 4)]["spec"], atol=2e-3, rtol=0)


def test_task_folds_share_entries_and_max_clips_limits_the_build(tmp_path, monkeypatch):
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target in (0, 1):
            name = f"{fold}-{target}.wav"
            write_noise(tmp_path / "esc" / "audio" / name, seconds=0.3, seed=fold * 2 + target)
            rows.append(f"{name},{fold},{target},c{target},False,{fold}{target},A")
    (tmp_path / "esc" / "meta").mkdir()
    (tmp_path / "esc" / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    writes = CountWrites(monkeypatch)
    frontend = FrontendConfig(norm="preset")
    data = build_task(ESC50Task(root=tmp_path / "esc", target_frames=32), frontend, RATE,
                      tmp_path / "cache")
    assert writes.count == 10  # each clip once, though it sits in five folds
    fold = data.folds[0]
    assert fold.train.features.present.all() and fold.test.features.present.all()
    uncached = build_task(ESC50Task(root=tmp_path / "esc", target_frames=32), frontend, RATE,
                          tmp_path / "other", data=load_config(None, {"data": {"feature_cache": False}}).data)
    assert uncached.folds[0].test.features is None
    torch.testing.assert_close(fold.test[1]["spec"], uncached.folds[0].test[1]["spec"], **NORM_TOL)
    writes.count = 0
    build_task(ESC50Task(root=tmp_path / "esc", folds=[1], max_clips=1), frontend, RATE,
               tmp_path / "cache2")
    assert writes.count == 2  # only the clips the capped parts use


def test_selecting_records_with_a_float64_gain_finds_their_entries(tmp_path):
    """RecordTable keeps gain as float32: 0.3 read back is not the float 0.3, and the
    selection for a task's split must still find the entry (Speech Commands silence slices)."""
    array = (np.random.default_rng(1).standard_normal((2, 8000)) * 3000).astype(np.int16)
    np.save(tmp_path / "w.npy", array)
    waves = WaveArray(8000, path=tmp_path / "w.npy")
    records = [ClipRecord(None, (0,), wave_index=0, gain=0.3), ClipRecord(None, (1,), wave_index=1, gain=0.5)]
    fast = cached(dataset_of(records, waves=waves), tmp_path / "cache")
    assert fast.features.select(records).present.all()
