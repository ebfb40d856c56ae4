"""`ajepa-stats`: mean/std of the raw log-mel, written where frontend.norm=dataset looks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch
import yaml

from ajepa.cli.stats import main as stats_main
from ajepa.config import load_config
from ajepa.data.stats import compute_norm_stats
from ajepa.data.tasks import build_pretrain_dataset, pretrain_stats_location

RATE = 16000


@pytest.fixture
def folder_config(tmp_path):
    rng = np.random.default_rng(0)
    for label, scale in (("quiet", 0.01), ("loud", 0.5)):
        for i in range(3):
            path = tmp_path / "data" / label / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, scale * rng.standard_normal(int(RATE * (0.2 + 0.1 * i))), RATE)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"kind": "folder", "root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")},
        "frontend": {"target_frames": 64, "norm": "dataset"},
        "optim": {"steps": 10, "warmup": 1},
    }))
    return config


def test_stats_are_the_moments_of_the_unpadded_log_mel(folder_config):
    dataset = build_pretrain_dataset(load_config(folder_config), normalise=False)
    mean, std, used = compute_norm_stats(dataset)
    values = torch.cat([dataset.log_mel(i).flatten() for i in range(len(dataset))]).double()
    assert used == 6
    assert mean == pytest.approx(float(values.mean()), rel=1e-9)
    assert std == pytest.approx(float(values.std(unbiased=False)), rel=1e-9)
    assert dataset.log_mel(0).shape[1] < 64  # padding exists and was left out


def test_a_clip_cap_spreads_over_the_whole_set(folder_config):
    dataset = build_pretrain_dataset(load_config(folder_config), normalise=False)
    _, _, used = compute_norm_stats(dataset, max_clips=2)
    mean_two, _, _ = compute_norm_stats(dataset.subset([0, 5]))
    assert used == 2 and compute_norm_stats(dataset, max_clips=2)[0] == pytest.approx(mean_two)


def test_cli_writes_stats_beside_the_data_and_training_reads_them(folder_config, tmp_path, capsys):
    cfg = load_config(folder_config)
    with pytest.raises(ValueError, match="ajepa-stats CONFIG"):
        build_pretrain_dataset(cfg)
    assert stats_main([str(folder_config)]) == 0
    written = tmp_path / "data" / "stats.json"
    assert pretrain_stats_location(cfg.data) / "stats.json" == written
    payload = json.loads(written.read_text())
    assert payload["num_clips"] == 6 and payload["frontend"]["num_mel_bins"] == 128
    assert f"-> {written}" in capsys.readouterr().out
    dataset = build_pretrain_dataset(cfg)
    assert dataset.frontend.stats == (payload["mean"], payload["std"])


def test_cli_overrides_and_out_path(folder_config, tmp_path):
    out = tmp_path / "elsewhere.json"
    assert stats_main([str(folder_config), "frontend.num_mel_bins=64", "--out", str(out), "--max-clips", "3"]) == 0
    payload = json.loads(out.read_text())
    assert payload["frontend"]["num_mel_bins"] == 64 and payload["num_clips"] == 3
    assert stats_main([str(folder_config), "frontend.nope=1"]) == 2


def test_synthetic_stats_are_computed_on_first_use(tmp_path):
    cfg = load_config(None, {"data": {"clip_seconds": 0.5, "cache_dir": str(tmp_path), "synthetic": {"num_clips": 24}},
                             "frontend": {"target_frames": 48, "norm": "dataset"}, "optim": {"steps": 10, "warmup": 1}})
    dataset = build_pretrain_dataset(cfg)
    stats_path = pretrain_stats_location(cfg.data) / "stats.json"
    assert stats_path.is_file() and stats_path.parent.parent.name == "synthetic"
    assert dataset.frontend.stats == tuple(json.loads(stats_path.read_text())[k] for k in ("mean", "std"))
    specs = torch.stack([dataset.as_training(False)[i]["spec"] for i in range(len(dataset))])
    assert abs(float(specs.mean())) < 0.25  # normalised by its own stats (padding-free here)
