"""A control trial (``Trainer.fit(pretrain=False)``, via ajepa.sweep.trial.run_trainer) evaluates, through the real
Trainer, exactly the encoder a trial of the same seed starts pretraining from -- and takes no step."""

from __future__ import annotations

import torch

from ajepa.sweep.trial import run_trainer
from ajepa.train import Trainer
from ajepa.train.callbacks import Callback


class Record(Callback):
    def __init__(self):
        self.events = []

    def on_start(self, trainer):
        self.events.append(("start", trainer.step))

    def on_log(self, step, metrics):
        self.events.append(("log", step))

    def on_eval(self, step, metrics):
        self.events.append(("eval", step))

    def on_checkpoint(self, step, path):
        self.events.append(("checkpoint", step))

    def on_end(self, status, summary):
        self.events.append((status, summary.get("train/steps")))


def test_control_evaluates_the_seeded_initial_encoder_without_a_step(tiny_config, tmp_path):
    cfg = tiny_config("seed=7")
    seen = {}

    def evaluator(encoders, step):
        seen.update(step=step, state={k: v.clone() for k, v in encoders["target"].state_dict().items()})
        return {"eval/synthetic/acc": 0.25}

    record = Record()
    torch.manual_seed(123)  # whatever the global RNG was before: the trainer seeds it
    summary = Trainer(cfg, callbacks=[record], evaluator=evaluator).fit(pretrain=False)
    assert summary == {"eval/synthetic/acc": 0.25, "eval/step": 0, "train/steps": 0, "data/skipped_clips": 0}
    assert record.events == [("start", 0), ("eval", 0), ("FINISHED", 0)]  # no log step, no checkpoint
    assert not (cfg.out_dir / "checkpoints").exists()

    # the encoder a pretraining trial of the same config starts from
    trial = Trainer(cfg.model_copy(update={"out_dir": tmp_path / "trial"}))
    torch.manual_seed(456)
    trial.setup()
    start = trial.model.target_encoder.state_dict()
    assert seen["step"] == 0 and seen["state"].keys() == start.keys()
    assert all(torch.equal(seen["state"][k], start[k]) for k in start)

    # and a control of another seed sees other weights
    other = {}
    run_trainer(type("Control", (), {"is_control": True})(),
                Trainer(tiny_config("seed=8").model_copy(update={"out_dir": tmp_path / "other"}),
                        evaluator=lambda enc, step: other.update(w=enc["target"].state_dict()) or {}))
    assert any(not torch.equal(other["w"][k], start[k]) for k in start)


def test_control_failure_is_reported_to_the_callbacks(tiny_config):
    record = Record()

    def broken(encoders, step):
        raise RuntimeError("probe exploded")

    try:
        Trainer(tiny_config(), callbacks=[record], evaluator=broken).fit(pretrain=False)
    except RuntimeError as err:
        assert "probe exploded" in str(err)
    else:
        raise AssertionError("the error must surface")
    assert record.events[-1] == ("FAILED", None)
