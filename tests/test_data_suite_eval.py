"""The general-audio suite end to end on a tiny checkpoint: every task from its fixture under
one data root, per-task metrics plus the suite mean, by ajepa-eval and by the Trainer's
evaluator; clips two tasks read alike are encoded once."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_suite_fixtures import write_suite
from test_eval_run import tiny_config, write_checkpoint

import ajepa.eval.run as run
from ajepa.cli.eval import main
from ajepa.config import SUITES

FAST = ["task.target_frames=32", "probe.cache=false", "probe.l2_grid=[0.01]", "probe.max_iter=30"]
MAIN = {"esc50": "acc", "urbansound8k": "acc", "speechcommands": "acc", "voxceleb1": "acc", "cremad": "acc",
        "gtzan": "acc", "nsynth": "acc"}


@pytest.fixture(scope="module")
def suite_root(tmp_path_factory):
    return write_suite(tmp_path_factory.mktemp("suite-data"))


def test_cli_suite_reports_every_task_and_the_mean(suite_root, tmp_path, capsys):
    cfg = tiny_config(tmp_path / "cache")
    checkpoint = write_checkpoint(cfg, tmp_path / "last.pt")
    out = tmp_path / "suite.json"
    assert main([str(checkpoint), "--suite", "general_audio", "--data-root", str(suite_root), "--out", str(out),
                 *FAST]) == 0
    result = json.loads(out.read_text())
    assert list(result["tasks"]) == [fields["task"] for fields, _ in SUITES["general_audio"]] == list(MAIN)
    scores = [result["metrics"][f"eval/{t}/{m}"] for t, m in MAIN.items()]
    assert all(0 <= s <= 1 for s in scores)
    assert result["metrics"]["eval/suite/general_audio/mean"] == pytest.approx(np.mean(scores))
    assert "eval/urbansound8k/fold10/acc" in result["metrics"]  # CV tasks keep their folds
    assert "general_audio: mean" in capsys.readouterr().out
    assert main([str(checkpoint), "--suite", "general_audio", "--data-root", str(suite_root), "task.esc11=1"]) == 2
    assert "esc11: not a parameter of task 'esc50'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(checkpoint), "--suite", "general_audio", "--data", str(suite_root)])


def test_evaluator_runs_the_suite_once_per_task_and_shares_clips(suite_root, tmp_path, monkeypatch):
    from ajepa.models.vit import encoder_from_config

    esc = suite_root / "ESC-50-master"
    cfg = tiny_config(tmp_path / "cache", f"eval.suite={{name: general_audio, data_root: {suite_root}, "
                      "task: {target_frames: 32, max_clips: 4}}", "eval.probe.l2_grid=[0.01]", "eval.probe.max_iter=30",
                      f"eval.tasks=[{{task: esc50, root: {esc}, target_frames: 32, max_clips: 4}}, "
                      f"{{task: esc50, root: {esc}, esc10: false, name: again, target_frames: 32, max_clips: 4}}]")
    assert [t.task for t in run.evaluation_tasks(cfg.eval)] == ["esc50", "esc50", *list(MAIN)[1:]]  # one esc50
    encoded = []
    extract = run.extract_embeddings
    monkeypatch.setattr(run, "extract_embeddings", lambda enc, data, *a, **k: encoded.append(len(data))
                        or extract(enc, data, *a, **k))
    encoder = encoder_from_config(cfg.model, cfg.grid)
    metrics = run.build_evaluator(cfg)({"target": encoder, "context": encoder}, 5)
    scores = [metrics[f"eval/{t}/{m}"] for t, m in MAIN.items()]
    assert metrics["eval/suite/general_audio/mean"] == pytest.approx(np.mean(scores))
    assert metrics["eval/again/acc"] == metrics["eval/esc50/acc"]
    assert len(encoded) == len(MAIN)  # 'again' reads the same clips: nothing left to encode
