"""The pretraining loop end to end on tiny CPU runs: metrics, resume, failures."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from ajepa.config import ConfigError
from ajepa.train import Callback, NonFiniteLossError, Trainer
from ajepa.train.checkpoint import checkpoint_path, load_checkpoint, load_encoder


class Recorder(Callback):
    def __init__(self, stop_after: int | None = None):
        self.logs, self.ends, self.checkpoints, self.stop_after = [], [], [], stop_after

    def on_log(self, step, metrics):
        self.logs.append((step, metrics))
        if self.stop_after is not None and step == self.stop_after:
            raise KeyboardInterrupt("simulated interruption")

    def on_checkpoint(self, step, path):
        self.checkpoints.append(step)

    def on_end(self, status, summary):
        self.ends.append((status, summary))


def test_run_reports_every_metric_and_writes_files(tiny_config):
    cfg = tiny_config()
    rec = Recorder()
    summary = Trainer(cfg, [rec]).fit()
    assert [s for s, _ in rec.logs] == [1, 2, 3, 4, 5, 6]
    expected = {"train/loss", "train/lr", "train/wd", "train/ema", "train/mask_ratio", "train/hard_share",
                "train/target_std", "train/target_rank", "train/samples_per_s", "train/data_wait"}
    assert expected <= set(rec.logs[-1][1])
    assert 0.2 < rec.logs[-1][1]["train/mask_ratio"] < 0.9
    assert rec.checkpoints == [3, 6]
    assert rec.ends[0][0] == "FINISHED" and summary["train/steps"] == 6
    lines = (cfg.out_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    encoder, saved_cfg = load_encoder(checkpoint_path(cfg.out_dir))
    assert saved_cfg.model == cfg.model
    assert encoder(torch.zeros(1, 1, 128, 96)).shape == (1, 48, 48)


def test_resume_reproduces_uninterrupted_losses(tiny_config, tmp_path):
    straight = tiny_config(f"out_dir={tmp_path / 'straight'}")
    rec_straight = Recorder()
    Trainer(straight, [rec_straight]).fit()

    resumed = tiny_config(f"out_dir={tmp_path / 'resumed'}")
    first = Recorder(stop_after=4)  # interrupted after the step-3 checkpoint
    with pytest.raises(KeyboardInterrupt):
        Trainer(resumed, [first]).fit()
    assert first.ends[0][0] == "FAILED"
    second = Recorder()
    Trainer(resumed, [second]).fit()
    assert [s for s, _ in second.logs] == [4, 5, 6]
    losses = {s: m["train/loss"] for s, m in rec_straight.logs}
    for step, metrics in second.logs:
        assert metrics["train/loss"] == pytest.approx(losses[step], rel=1e-5, abs=1e-7)
    # the metrics file reads as one run: the interrupted run's step 4 is not duplicated
    steps = [json.loads(x)["step"] for x in (resumed.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    a = load_checkpoint(checkpoint_path(straight.out_dir))["model"]
    b = load_checkpoint(checkpoint_path(resumed.out_dir))["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_resume_refuses_a_changed_experiment(tiny_config):
    cfg = tiny_config("optim.steps=3", "optim.warmup=1")
    Trainer(cfg, []).fit()
    written = (cfg.out_dir / "config.yaml").read_text()
    assert "smooth_l1" in written
    with pytest.raises(ConfigError, match=r"loss\.kind: 'smooth_l1' -> 'l2'"):
        Trainer(tiny_config("optim.steps=3", "optim.warmup=1", "loss.kind=l2"), []).fit()
    assert (cfg.out_dir / "config.yaml").read_text() == written, "a refused resume keeps the run's config"


def test_non_finite_loss_names_the_step(tiny_config):
    cfg = tiny_config("optim.lr=1e30", "optim.scale_lr=false", "optim.warmup=0", "log_every=100",
                      "checkpoint_every=100")
    rec = Recorder()
    with pytest.raises(NonFiniteLossError, match=r"at step \d+; last finite loss"):
        Trainer(cfg, [rec]).fit()
    assert rec.ends[0][0] == "FAILED" and "NonFiniteLossError" in rec.ends[0][1]["error"]
    assert not checkpoint_path(cfg.out_dir).exists()  # nothing non-finite was saved


def test_batch_larger_than_data_fails_before_training(tiny_config):
    with pytest.raises(ConfigError, match="fewer than optim.batch_size"):
        Trainer(tiny_config("optim.batch_size=512"), []).fit()


def test_evaluator_results_reach_summary_and_callbacks(tiny_config):
    calls = []

    def evaluator(encoders, step):
        calls.append((sorted(encoders), step))
        return {"eval/fake/acc": 0.5}

    rec = Recorder()
    summary = Trainer(tiny_config("eval.every_steps=4"), [rec], evaluator=evaluator).fit()
    assert calls == [(["context", "target"], 4), (["context", "target"], 6)]
    assert summary["eval/fake/acc"] == 0.5 and summary["eval/step"] == 6


def test_initial_weights_do_not_depend_on_a_cold_or_warm_data_cache(tiny_config, tmp_path):
    """First use generates the synthetic clips and their stats.json; that work must not
    draw from the global RNG the model is initialised from (it once did, through the
    stats DataLoader's base seed, so a test run and a CLI run of one config differed)."""
    cache = tmp_path / "fresh-cache"
    weights = []
    for attempt in ("cold", "warm"):
        trainer = Trainer(tiny_config("frontend.norm=dataset", f"data.cache_dir={cache}",
                                      f"out_dir={tmp_path / attempt}"))
        trainer.setup()
        weights.append(trainer.model.state_dict())
    assert (cache / "synthetic").is_dir()
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_thread_setting_explicit_then_environment_then_half_the_cpus(monkeypatch):
    import torch

    from ajepa.train.loop import configure_threads, usable_cpus

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_threads(None) == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert configure_threads(None) == max(1, usable_cpus() // 2) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_a_checkpoint_from_before_a_new_config_key_still_resumes(tiny_config):
    """A key added to the config types after a run started counts as its default."""
    from ajepa.config import dump_config
    from ajepa.train.checkpoint import config_differences

    cfg = tiny_config("optim.steps=3", "optim.warmup=1")
    saved = dump_config(cfg)
    del saved["masking"]["masks_per_clip"]  # as written before masks_per_clip existed
    assert config_differences(saved, cfg) == []
    changed = tiny_config("optim.steps=3", "optim.warmup=1", "masking.masks_per_clip=2")
    assert config_differences(saved, changed) == ["masking.masks_per_clip: 1 -> 2"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_a_checkpoint"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tiny_config, capsys, damage):
    """last.pt torn, emptied or replaced after the fact: the run resumes from last.prev.pt
    (the step-3 checkpoint) with a warning naming both, and finishes as a straight run does."""
    cfg = tiny_config()
    Trainer(cfg, [Recorder()]).fit()  # checkpoints at 3 and 6: last.pt = 6, last.prev.pt = 3
    last = checkpoint_path(cfg.out_dir)
    assert load_checkpoint(last.with_name("last.prev.pt"))["step"] == 3
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                      "not_a_checkpoint": b"step: 6\n"}[damage])
    rec = Recorder()
    Trainer(cfg, [rec]).fit()
    err = capsys.readouterr().err
    assert "last.pt is not a readable checkpoint" in err and "last.prev.pt (step 3)" in err
    assert "weights_only" not in err
    assert [s for s, _ in rec.logs] == [4, 5, 6]
    assert load_checkpoint(last)["step"] == 6


def test_an_unreadable_checkpoint_without_fallback_is_one_clear_error(tiny_config, tmp_path):
    from ajepa.train.checkpoint import CheckpointError
    cfg = tiny_config()
    last = checkpoint_path(cfg.out_dir)
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(CheckpointError, match=r"last\.pt is not a readable checkpoint .*no previous checkpoint"):
        Trainer(cfg, []).fit()
    with pytest.raises(CheckpointError, match=r"last\.pt is not a readable checkpoint"):
        load_encoder(last)


def test_a_torn_last_metrics_line_is_repaired_on_resume(tiny_config):
    cfg = tiny_config()
    first = Recorder(stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, [first]).fit()
    metrics = cfg.out_dir / "metrics.jsonl"
    with metrics.open("a") as fh:
        fh.write('{"step": 5, "train/lo')  # killed mid-write
    Trainer(cfg, [Recorder()]).fit()
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_from_before_predictor_attention_resumes_only_as_it_ran(tiny_config):
    """Runs saved before model.predictor_attention existed used the shared-context pattern:
    resuming them under today's per_block default is a change of experiment, named."""
    from ajepa.config import dump_config
    from ajepa.train.checkpoint import config_differences
    saved = dump_config(tiny_config("model.predictor_attention=shared_context"))
    del saved["model"]["predictor_attention"]
    assert config_differences(saved, tiny_config("model.predictor_attention=shared_context")) == []
    assert config_differences(saved, tiny_config("model.predictor_attention=per_block")) == [
        "model.predictor_attention: 'shared_context' -> 'per_block'"]


def test_a_clip_that_turns_non_finite_mid_file_is_counted_when_skipped(tiny_config, tmp_path):
    """It passes the up-front header check, fails decoding into the feature cache, is
    replaced at load time, and counts in the run's summary (data/skipped_clips)."""
    import numpy as np
    import soundfile
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for i in range(6):
            path = tmp_path / "clips" / label / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            wave = 0.1 * rng.standard_normal(16000).astype(np.float32)
            if (label, i) == ("b", 5):
                wave[-2000:] = np.nan  # fine at the start, broken near the end
            soundfile.write(path, wave, 16000, subtype="FLOAT")
    cfg = tiny_config("data.kind=folder", f"data.root={tmp_path / 'clips'}", "data.skip_bad_files=true",
                      "optim.batch_size=4", "optim.steps=2", "checkpoint_every=2")
    with warnings.catch_warnings():  # "skipping bad clip" whenever the sampler draws it
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = Trainer(cfg, []).fit()
    assert summary["data/skipped_clips"] == 1


def test_runs_sharing_a_checkpoint_dir_pretrain_once_and_evaluate_their_own_way(tiny_config, tmp_path):
    """Two runs that differ only in evaluation share one pretraining: the second trains no
    step, evaluates with its own settings, and gets what a separate pretraining gives it."""
    from ajepa.eval import build_evaluator
    from ajepa.train.checkpoint import pretraining_signature
    shared = tmp_path / "pretraining"
    tasks = "eval.tasks=[{task: synthetic}]", "data.synthetic.num_classes=3"

    def run(name, *extra):
        cfg = tiny_config(f"out_dir={tmp_path / name}", *tasks, *extra)
        rec = Recorder()
        summary = Trainer(cfg, [rec], evaluator=build_evaluator(cfg)).fit()
        return cfg, rec, summary

    first_cfg, first, _ = run("mean", f"checkpoint_dir={shared}")
    second_cfg, second, summary = run("freq", f"checkpoint_dir={shared}", "eval.probe.pooling=freq_concat")
    assert pretraining_signature(first_cfg) == pretraining_signature(second_cfg)
    assert [s for s, _ in first.logs] == [1, 2, 3, 4, 5, 6] and second.logs == []  # no step trained twice
    assert not (tmp_path / "freq" / "checkpoints").exists() and (shared / "last.pt").exists()
    _, _, separate = run("freq_alone", "eval.probe.pooling=freq_concat")
    assert summary["eval/synthetic/acc"] == separate["eval/synthetic/acc"]
    assert pretraining_signature(tiny_config("optim.lr=5e-4")) != pretraining_signature(first_cfg)
    assert pretraining_signature(first_cfg, "commit-b") != pretraining_signature(first_cfg, "commit-a")


def test_the_training_lock_makes_a_second_run_wait(tmp_path):
    import threading
    import time

    from ajepa.train.checkpoint import training_lock
    order = []

    def second():
        with training_lock(tmp_path):
            order.append("second")

    with training_lock(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join(10)
    assert order == ["first done", "second"]
