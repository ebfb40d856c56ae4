from pathlib import Path

from ajepa.config_doc import render


def test_config_reference_is_up_to_date():
    committed = (Path(__file__).parents[1] / "docs" / "CONFIG.md").read_text()
    assert committed == render(), "docs/CONFIG.md is stale: run `python -m ajepa.config_doc > docs/CONFIG.md`"
