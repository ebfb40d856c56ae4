"""benchmarks/real_devset.py and benchmarks/real_audio.py on a few generated clips (no
Debian packages needed): grouping, folds, the ESC-50 files the loader reads, the refusal
when a package is missing, and the log-mel-statistics baseline through the real probe."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


devset = _load("real_devset")


def test_group_key_drops_take_numbers_but_keeps_names():
    rule = devset.Rule("footsteps", "minetest-data", "x")
    key = devset.group_key
    assert key(rule, "/a/default_grass_footstep.1.ogg") == key(rule, "/b/default_grass_footstep.3.ogg")
    assert key(rule, "/a/explosion1.ogg") == key(rule, "/a/explosion9.ogg") == "minetest-data:footsteps:explosion"
    assert key(rule, "/a/f16_1.wav") == "minetest-data:footsteps:f16"
    assert key(rule, "/a/m16.ogg") == "minetest-data:footsteps:m16"
    by_dir = devset.Rule("speech", "ktuberling-data", "x", group="dir")
    assert key(by_dir, "/s/fr/hat.ogg") == key(by_dir, "/s/fr/nose.ogg") != key(by_dir, "/s/de/hat.ogg")
    assert devset.slug("minetest-data:footsteps:default_grass_footstep") == "minetest_default_grass_footstep"


def test_every_rule_names_a_class_and_compiles():
    import re

    for rule in devset.RULES:
        assert rule.category in devset.CLASSES
        re.compile(rule.pattern)
    assert 10 <= len(devset.CLASSES) <= 20
    assert devset.classify("minetest-data", "/usr/share/games/minetest/x/default_sand_footstep.2.ogg").category \
        == "footsteps"
    assert devset.classify("minetest-data", "/usr/share/games/minetest/x/menu_music.ogg") is None


def test_segments_cut_long_files_and_pad_short_ones():
    rate = devset.SAMPLE_RATE
    assert [s for s, _ in devset.segments(np.ones(12 * rate), 4)] == [0, 5 * rate]  # 2 s tail dropped
    assert [s for s, _ in devset.segments(np.ones(13 * rate), 4)] == [0, 5 * rate, 10 * rate]
    assert len(devset.segments(np.ones(60 * rate), 4)) == 4
    clip = devset.to_clip(np.full(rate, 0.5))
    assert clip.dtype == np.int16 and clip.shape == (devset.CLIP_SAMPLES,) and clip[rate:].max() == 0
    assert not devset.audible(np.full(rate, 1e-4)) and devset.audible(np.full(rate, 0.1))
    assert [devset._take_letter(i) for i in (0, 25, 26)] == ["A", "Z", "AA"]


def _clips(per_class=12, classes=("explosion", "water", "speech")):
    rng = np.random.default_rng(0)
    clips = []
    for c, category in enumerate(classes):
        for i in range(per_class):
            group = f"pkg-data:{category}:rec{i % 6}"
            t = np.arange(devset.CLIP_SAMPLES) / devset.SAMPLE_RATE
            wave = 0.3 * np.sin(2 * np.pi * (300 + 900 * c + 20 * i) * t) + 0.01 * rng.standard_normal(t.size)
            clips.append(devset.Clip(category, group, "pkg-data", f"/src/{category}/rec{i}.wav", 0.0, 5.0,
                                     devset.to_clip(wave)))
    return clips


def test_folds_keep_each_recording_in_one_fold_and_balance_classes():
    clips = devset.select(_clips(), max_per_group=8, max_per_class=60)
    devset.assign_folds(clips)
    folds_of: dict[str, set[int]] = {}
    for clip in clips:
        folds_of.setdefault(clip.group, set()).add(clip.fold)
    assert all(len(f) == 1 for f in folds_of.values())
    for category in ("explosion", "water", "speech"):
        counts = [sum(c.fold == f and c.category == category for c in clips) for f in range(1, 6)]
        assert max(counts) - min(counts) <= 2 and min(counts) >= 1, counts


def test_written_set_reads_as_esc50(tmp_path):
    from ajepa.data.tasks import ESC50_COLUMNS, esc50_source

    clips = devset.select(_clips(), 8, 60)
    devset.assign_folds(clips)
    rows = devset.write(tmp_path, clips, {"pkg-data": "1.0"}, {"seed": devset.SEED})
    with (tmp_path / "meta" / "esc50.csv").open() as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == ESC50_COLUMNS
    source = esc50_source(tmp_path)
    assert len(source.records) == len(rows) == 36
    assert source.class_names == ["explosion", "water", "speech"]  # targets 0, 2, 9 -> 0..2
    assert {r.fold for r in source.records} == {1, 2, 3, 4, 5}
    assert len({r.group for r in source.records}) == 18
    first = sorted((tmp_path / "audio").iterdir())[0].read_bytes()
    devset.clear_output(tmp_path)
    devset.write(tmp_path, clips, {"pkg-data": "1.0"}, {"seed": devset.SEED})
    assert sorted((tmp_path / "audio").iterdir())[0].read_bytes() == first  # byte-identical rebuild


def test_missing_package_refuses_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(devset, "package_version", lambda package: None)
    assert devset.main(["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install -y --no-install-recommends" in err[0] and "minetest-data" in err[0]


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        devset.clear_output(tmp_path)


def test_logmel_baseline_and_init_encoder_through_the_project_probe(tmp_path):
    from ajepa.config import load_config

    bench = _load("real_audio")
    clips = devset.select(_clips(per_class=10), 8, 60)
    devset.assign_folds(clips)
    devset.write(tmp_path / "dev", clips, {"pkg-data": "1.0"}, {})
    cfg = load_config(BENCHMARKS.parent / "experiments" / "tiny.yaml",
                      [f"out_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}", "device=cpu"])
    task, task_data = bench.build_dev_task(cfg, tmp_path / "dev", "task")
    assert (tmp_path / "dev" / "stats.json").is_file()  # computed as ajepa-stats would
    embeddings = bench.logmel_stats_embeddings(task_data)
    assert embeddings[("fold1", "train")].features.shape[1] == 2 * cfg.frontend.num_mel_bins
    metrics, outcomes = bench.probe_arrays(embeddings, task_data, cfg)
    assert metrics["eval/real/acc"] > 0.9  # three pure tones: trivially separable from band energies
    per_class = bench.per_class_accuracy(outcomes, task_data.num_classes)
    assert len(outcomes) == sum(len(f.test) for f in task_data.folds)
    labels = [int(row["label"]) for row in outcomes]
    assert np.isclose(np.average(per_class[np.isfinite(per_class)], weights=np.bincount(labels)[np.bincount(labels) > 0]),
                      np.mean([row["correct"] for row in outcomes]))
    assert set(k for k in metrics if k.endswith("/acc")) >= {f"eval/real/fold{k}/acc" for k in range(1, 6)}

    import torch

    from ajepa.models.jepa import AJEPA

    # token rank on the task's clips: the initial encoder spreads its tokens over many
    # directions; one whose output norm maps every token to the same vector has rank 1
    init = bench.initial_encoder(cfg)
    assert bench.token_rank(init, task_data, "cpu") > 10
    with torch.no_grad():
        init.norm.weight.zero_()
    assert bench.token_rank(init, task_data, "cpu") == pytest.approx(1.0)

    torch.manual_seed(cfg.seed)
    expected = AJEPA(cfg).target_encoder.state_dict()
    state = torch.random.get_rng_state()
    rebuilt = bench.initial_encoder(cfg).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert all(torch.equal(expected[k], rebuilt[k]) for k in expected)


def test_pooled_comparison_over_seeds_reports_the_clip_level_difference(capsys):
    bench = _load("real_audio")

    def rows(correct):  # one row per clip of a 2-fold, 10-clip task, as ajepa.eval.run.prediction_rows
        return [{"fold": f"fold{1 + i % 2}", "clip": f"c{i}.wav", "label": "0", "prediction": "0" if c else "1",
                 "correct": int(c)} for i, c in enumerate(correct)]

    def result(seed, init_correct):
        metrics = lambda acc: {"eval/real/acc": acc}  # noqa: E731
        return {"seed": seed, "name": "real", "rows": [
            ("pretrained (EMA target)", metrics(1.0), rows([1] * 10)),
            ("init (same arch, seed)", metrics(np.mean(init_correct)), rows(init_correct)),
            ("log-mel stats (256-d)", metrics(0.0), rows([0] * 10)),
        ]}

    summary = bench.print_pooled([result(0, [1] * 5 + [0] * 5), result(1, [1] * 8 + [0] * 2)])
    out = capsys.readouterr().out
    # what --json keeps is what was printed
    assert summary["seeds"] == [0, 1] and summary["mean_acc"]["init (same arch, seed)"] == pytest.approx(0.65)
    init = summary["pretrained_minus"]["init (same arch, seed)"]
    assert init["diff"] == pytest.approx(0.35) and init["per_seed"] == pytest.approx([0.5, 0.2])
    assert init["low"] <= init["diff"] <= init["high"] and 0 <= init["p"] <= 1
    assert "pooled over 2 checkpoints (seeds 0, 1)" in out and "init 0.650" in out
    assert "pretrained - init: +35.0 points" in out and "per seed +50.0 +20.0" in out
    assert "pretrained - log-mel stats: +100.0 points" in out

    reference = [dict(result(0, [0] * 10), checkpoint="ref0"), dict(result(1, [0] * 10), checkpoint="ref1")]
    for position, run in enumerate(reference):  # the reference recipe's pretrained row: right on 6 and 9 clips
        hits = [1] * (6 + 3 * position) + [0] * (4 - 3 * position)
        run["rows"][0] = ("pretrained (EMA target)", {"eval/real/acc": np.mean(hits)}, rows(hits))
    bench.print_pooled([result(0, [1] * 5 + [0] * 5), result(1, [1] * 8 + [0] * 2)], reference)
    out = capsys.readouterr().out
    assert "reference recipe: 0.750" in out and "pretrained - reference recipe: +25.0 points" in out
    assert "per seed +40.0 +10.0" in out


def test_a_fixable_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    bench = _load("real_audio")
    code = bench.main(["--config", str(BENCHMARKS.parent / "experiments" / "tiny.yaml"), f"out_dir={tmp_path / 'run'}",
                       "data.kind=folder", f"data.root={tmp_path / 'missing'}", "--data", str(tmp_path / "dev")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("real_audio: ") and "missing" in err[0]


def test_overrides_after_several_checkpoints_are_told_apart_from_run_folders():
    bench = _load("real_audio")
    args = bench.parse_args(["--checkpoint", "runs/a", "runs/lr=1e-3", "--against", "runs/r0", "runs/r1",
                             "eval.probe.pooling=mean_max", "eval.x=a//b/"])
    assert args.against == [Path("runs/r0"), Path("runs/r1")]
    assert args.checkpoint == [Path("runs/a"), Path("runs/lr=1e-3")]  # a path is not a dotted key
    assert args.overrides == ["eval.probe.pooling=mean_max", "eval.x=a//b/"]  # values kept verbatim
    with pytest.raises(SystemExit) as refused:  # one reference run per evaluated run, checked before any work
        bench.parse_args(["--checkpoint", "runs/a", "runs/b", "--against", "runs/r0"])
    assert refused.value.code == 2
