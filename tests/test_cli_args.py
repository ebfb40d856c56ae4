"""Every entry point accepts dotted overrides before or after its options."""

import json
from pathlib import Path

from ajepa.cli.stats import main as stats_main
from ajepa.cli.train import main as train_main

TINY = str(Path(__file__).parents[1] / "experiments" / "tiny.yaml")


def test_train_overrides_after_a_flag(capsys):
    assert train_main([TINY, "--print-config", "optim.steps=700"]) == 0
    assert "steps: 700" in capsys.readouterr().out


def test_stats_overrides_after_an_option(tmp_path, synthetic_cache):
    out = tmp_path / "stats.json"
    code = stats_main([TINY, "--out", str(out), f"data.cache_dir={synthetic_cache}", "data.clip_seconds=1.0",
                       "data.synthetic.num_clips=60", "--max-clips", "4"])
    assert code == 0
    stats = json.loads(out.read_text())
    assert stats["std"] > 0 and stats["num_clips"] == 4


def test_masks_reports_a_bad_override_in_one_line(tmp_path, capsys):
    from ajepa.cli.masks import main as masks_main

    assert masks_main(["optim.nope=1", "--out", str(tmp_path)]) == 2
    assert "ajepa-masks: invalid config" in capsys.readouterr().err
