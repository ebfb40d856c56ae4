"""The Trainer's evaluator and ajepa-eval, end to end on the synthetic task and an ESC-50 layout."""

import csv
import json

import numpy as np
import pytest
import soundfile
import torch

from ajepa.cli.eval import main
from ajepa.config import SyntheticTask, dump_config, load_config
from ajepa.eval import build_evaluator, probe_encoder
from ajepa.eval.run import build_task_data
from ajepa.models.jepa import AJEPA
from ajepa.models.vit import encoder_from_config

TINY = [
    "model.preset=tiny", "model.encoder_dim=32", "model.encoder_heads=2", "model.encoder_depth=2",
    "model.predictor_dim=32", "model.predictor_heads=2", "model.predictor_depth=1",
    "data.clip_seconds=0.5", "frontend.num_mel_bins=32", "frontend.target_frames=48", "frontend.norm=none",
    "data.synthetic.num_clips=60", "data.synthetic.num_classes=4", "eval.batch_size=32",
    "eval.probe.l2_grid=[0.001,0.1]",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def tiny_config(cache_dir, *extra):
    return load_config(None, [*TINY, f"data.cache_dir={cache_dir}", *extra])


def test_no_tasks_no_evaluator(cache_dir):
    assert build_evaluator(tiny_config(cache_dir)) is None


def test_duplicate_task_names_are_rejected(cache_dir):
    cfg = tiny_config(cache_dir, "eval.tasks=[{task: synthetic}, {task: synthetic}]")
    with pytest.raises(ValueError, match="distinct `name`"):
        build_evaluator(cfg)


def test_evaluator_probes_the_chosen_encoder_and_keeps_the_rng(cache_dir):
    cfg = tiny_config(cache_dir, "eval.tasks=[{task: synthetic}, {task: synthetic, name: syn_k2}]",
                      "eval.encoder=context")
    evaluator = build_evaluator(cfg)
    target, context = encoder_from_config(cfg.model, cfg.grid), encoder_from_config(cfg.model, cfg.grid)
    used = []
    target.register_forward_hook(lambda *a: used.append("target"))
    context.register_forward_hook(lambda *a: used.append("context"))
    rng = torch.get_rng_state()
    metrics = evaluator({"target": target, "context": context}, 10)
    assert set(used) == {"context"}
    assert torch.equal(torch.get_rng_state(), rng)
    for prefix in ("synthetic", "syn_k2"):
        for name in ("acc", "acc_std", "map", "f1", "fold1/acc"):
            assert 0.0 <= metrics[f"eval/{prefix}/{name}"] <= 1.0
    again = evaluator({"target": target, "context": context}, 20)
    assert again == metrics  # same encoder, same seed: same numbers


def test_probe_encoder_separates_informative_from_constant_features(cache_dir):
    """The helper the lead uses for pretrained-vs-random: a dead encoder scores at chance."""
    cfg = tiny_config(cache_dir, "data.synthetic.num_clips=240")  # 36 test clips: 12 were a coin toss
    task = build_task_data(SyntheticTask(), cfg)
    torch.manual_seed(0)  # initial weights drawn from the process's unseeded RNG made it flaky
    live = encoder_from_config(cfg.model, cfg.grid)
    dead = encoder_from_config(cfg.model, cfg.grid)
    with torch.no_grad():
        dead.norm.weight.zero_()  # every feature is the LayerNorm bias: constant
    good = probe_encoder(live, task, cfg.eval)
    bad = probe_encoder(dead, task, cfg.eval)
    assert good["eval/synthetic/acc"] > bad["eval/synthetic/acc"]
    assert bad["eval/synthetic/acc"] <= 0.5


def read_predictions(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluator_writes_per_clip_predictions_that_reproduce_the_accuracy(cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, "eval.tasks=[{task: synthetic}]")
    evaluator = build_evaluator(cfg, predictions_dir=tmp_path / "predictions")
    torch.manual_seed(0)
    first = encoder_from_config(cfg.model, cfg.grid)
    metrics = evaluator({"target": first, "context": first}, 7)
    rows = read_predictions(tmp_path / "predictions" / "synthetic.csv")
    assert rows and list(rows[0]) == ["step", "fold", "clip", "label", "prediction", "correct"]
    assert {r["step"] for r in rows} == {"7"}
    assert len({(r["fold"], r["clip"]) for r in rows}) == len(rows)  # one row per test clip
    assert all(r["clip"].startswith("wave") for r in rows)
    assert all(int(r["correct"]) == (r["label"] == r["prediction"]) for r in rows)
    assert np.mean([int(r["correct"]) for r in rows]) == pytest.approx(metrics["eval/synthetic/acc"])  # one fold
    # another encoder: the same clips under the same ids, the file replaced by the latest evaluation
    torch.manual_seed(1)
    second = encoder_from_config(cfg.model, cfg.grid)
    evaluator({"target": second, "context": second}, 9)
    again = read_predictions(tmp_path / "predictions" / "synthetic.csv")
    assert {r["step"] for r in again} == {"9"}
    assert [(r["fold"], r["clip"], r["label"]) for r in again] == [(r["fold"], r["clip"], r["label"]) for r in rows]


def test_finetune_protocol_through_the_evaluator(cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, "eval.tasks=[{task: synthetic, protocol: finetune}]", "eval.finetune.epochs=1",
                      "eval.finetune.batch_size=16", "eval.finetune.specaug_time=8", "eval.finetune.specaug_freq=4")
    encoder = encoder_from_config(cfg.model, cfg.grid)
    metrics = build_evaluator(cfg, predictions_dir=tmp_path)({"target": encoder, "context": encoder}, 1)
    assert {"eval/synthetic/acc", "eval/synthetic/f1", "eval/synthetic/map"} <= set(metrics)
    rows = read_predictions(tmp_path / "synthetic.csv")
    assert np.mean([int(r["correct"]) for r in rows]) == pytest.approx(metrics["eval/synthetic/acc"])


# --------------------------------------------------------------------------- CLI


def write_checkpoint(cfg, path):
    torch.manual_seed(0)
    torch.save({"model": AJEPA(cfg).state_dict(), "config": dump_config(cfg)}, path)
    return path


def test_cli_synthetic_writes_json_and_caches_embeddings(cache_dir, tmp_path, capsys):
    cfg = tiny_config(cache_dir, f"eval.cache_dir={tmp_path / 'emb'}")
    checkpoint = write_checkpoint(cfg, tmp_path / "last.pt")
    out = tmp_path / "result.json"
    assert main([str(checkpoint), "--task", "synthetic", "--out", str(out), "probe.pooling=freq_concat"]) == 0
    result = json.loads(out.read_text())
    assert result["eval_config"]["probe"]["pooling"] == "freq_concat"
    assert 0 <= result["metrics"]["eval/synthetic/acc"] <= 1
    assert result["folds"][0]["selection"]["l2"] in (0.001, 0.1)
    assert "eval/synthetic/acc" in capsys.readouterr().out
    assert len(list((tmp_path / "emb").glob("*.pt"))) == 1
    assert main([str(checkpoint), "--task", "synthetic", "--encoder", "context", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["encoder"] == "context"
    assert len(list((tmp_path / "emb").glob("*.pt"))) == 2  # other weights, other entry


def test_cli_errors_name_the_fix(cache_dir, tmp_path, capsys):
    cfg = tiny_config(cache_dir)
    checkpoint = write_checkpoint(cfg, tmp_path / "last.pt")
    assert main([str(checkpoint), "--task", "esc50"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main([str(checkpoint), "--task", "esc50", "--data", str(tmp_path)]) == 2
    assert "esc50.csv" in capsys.readouterr().err
    assert main([str(checkpoint), "--task", "synthetic", "probe.solverr=sgd"]) == 2
    assert "solverr" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pt"), "--task", "synthetic"]) == 2


def write_esc50(root, classes=3, per_fold=2, seconds=0.4, sample_rate=16000):
    """The ESC-50 release layout: audio/<fold>-<src>-<take>-<target>.wav + meta/esc50.csv."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rows = []
    for fold in range(1, 6):
        for target in range(classes):
            for take in range(per_fold):
                name = f"{fold}-{target}{take}-A-{target}.wav"
                wave = 0.3 * np.sin(2 * np.pi * 300 * (target + 1) * t) + 0.05 * rng.normal(size=t.size)
                soundfile.write(root / "audio" / name, wave.astype(np.float32), sample_rate)
                rows.append([name, fold, target, f"class{target}", "False", f"{fold}{target}{take}", "A"])
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"], *rows])


def test_cli_esc50_five_folds_on_an_adapted_grid(cache_dir, tmp_path):
    write_esc50(tmp_path / "ESC-50")
    cfg = tiny_config(cache_dir)
    checkpoint = write_checkpoint(cfg, tmp_path / "last.pt")
    out = tmp_path / "esc.json"
    # 32 frames -> a 2x2 grid, not the 2x3 of pretraining: the encoder is adapted
    assert main([str(checkpoint), "--task", "esc50", "--data", str(tmp_path / "ESC-50"), "--out", str(out),
                 "task.target_frames=32", "probe.cache=false"]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    folds = [metrics[f"eval/esc50/fold{k}/acc"] for k in range(1, 6)]
    assert metrics["eval/esc50/acc"] == pytest.approx(np.mean(folds))
    assert metrics["eval/esc50/acc_std"] == pytest.approx(np.std(folds))
    assert metrics["eval/esc50/acc"] > 0.5  # three pure tones: chance is 1/3


def test_embedding_cache_sees_audio_rewritten_in_place(cache_dir, tmp_path):
    """Overwriting a task's wavs (same paths, same sizes) must not serve the old embeddings."""
    root = tmp_path / "ESC-50"
    write_esc50(root)
    cfg = tiny_config(cache_dir)
    checkpoint = write_checkpoint(cfg, tmp_path / "last.pt")

    def accuracy(*extra):
        out = tmp_path / "esc.json"
        assert main([str(checkpoint), "--task", "esc50", "--data", str(root), "--out", str(out),
                     "task.target_frames=32", f"eval.cache_dir={tmp_path / 'emb'}", *extra]) == 0
        return json.loads(out.read_text())["metrics"]["eval/esc50/acc"]

    tones = accuracy()
    assert tones > 0.5 and accuracy() == tones  # the second run reads the cache
    for wav in (root / "audio").glob("*.wav"):
        size = wav.stat().st_size
        info = soundfile.info(wav)
        soundfile.write(wav, np.zeros(info.frames, np.float32), info.samplerate)
        assert wav.stat().st_size == size
    silence = accuracy()
    assert silence == accuracy("probe.cache=false") and silence < tones
