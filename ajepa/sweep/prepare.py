"""Data preparation the trials share, done once by the driver before Ray starts.

``frontend.norm: dataset`` (the tiny base) needs ``stats.json`` beside the data. For the
built-in synthetic set the driver generates the clips and computes the stats once, instead
of every trial failing (or all of them racing to do it). For real datasets the stats are a
deliberate step (``ajepa-stats``) and are only checked, when the data is visible here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ajepa.config import TrainConfig
from ajepa.sweep.errors import SpecError
from ajepa.sweep.trials import Sweep

log = logging.getLogger(__name__)


def _distinct_data(sweep: Sweep) -> list[TrainConfig]:
    """One config per distinct (data, frontend) pair among the trials (usually one)."""
    seen, out = set(), []
    configs = [t.config() for t in sweep.trials] or [
        sweep.build_trial(0, "probe", sweep.spec.seeds[0], {}, {}).config()]
    for cfg in configs:
        key = (cfg.data.model_dump_json(), cfg.frontend.model_dump_json())
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


def prepare_data(sweep: Sweep, echo=print) -> None:
    """Make sure every trial finds the normalisation stats it needs."""
    needing = [cfg for cfg in _distinct_data(sweep) if cfg.frontend.norm == "dataset"]
    if not needing:
        return
    from ajepa.audio.features import stats_file
    from ajepa.data.tasks import build_pretrain_dataset, pretrain_stats_location

    for cfg in needing:
        location = pretrain_stats_location(cfg.data)
        path = stats_file(location)
        if path.is_file():
            continue
        if cfg.data.kind != "synthetic":
            if Path(location).exists():
                raise SpecError(
                    f"{sweep.path}: frontend.norm=dataset but {path} does not exist.\n"
                    f"  Fix: run `ajepa-stats {sweep.base_path}` (with the sweep's data overrides) once, "
                    "or set overrides: {frontend.norm: preset}"
                )
            log.warning("cannot see %s from this machine; trials will look for %s themselves", location, path)
            continue
        echo(f"preparing synthetic data and its normalisation stats in {Path(location)} (once) ...")
        build_pretrain_dataset(cfg)  # generates the clips and writes stats.json on first use
