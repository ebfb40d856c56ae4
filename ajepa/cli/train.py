"""`ajepa-train`: pretrain A-JEPA from a YAML experiment plus dotted overrides.

Thin by design: it loads the config, builds the evaluator and progress bar, and hands
over to :class:`ajepa.train.Trainer`. The other entry points are its siblings in
:mod:`ajepa.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys

from ajepa.cli.common import fail, guarded
from ajepa.config import ConfigError, load_config
from ajepa.contracts import PREDICTIONS

TRAIN_EPILOG = """\
examples:
  ajepa-train experiments/tiny.yaml
  ajepa-train experiments/tiny.yaml optim.steps=500 masking.strategy=random masking.ratio=0.6
  ajepa-train experiments/paper_vitb.yaml data.manifest=/data/audioset/unbal_train.json

Overrides are dotted config keys (every key: docs/CONFIG.md); values are parsed as YAML.
Pointing out_dir at a folder that holds a checkpoint resumes that run exactly.
"""


def main(argv: list[str] | None = None) -> int:
    """``ajepa-train``; errors a user can fix end in one line and exit code 2 (ajepa.cli.common)."""
    return guarded("ajepa-train", lambda: run(argv))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ajepa-train", description="Pretrain A-JEPA on audio spectrograms.",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="experiment YAML, e.g. experiments/tiny.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        return fail("ajepa-train", err)
    if args.print_config:
        import yaml

        from ajepa.config import dump_config
        print(yaml.safe_dump(dump_config(cfg), sort_keys=False))
        return 0

    from ajepa.eval import build_evaluator
    from ajepa.train import RichProgress, Trainer
    from ajepa.train.callbacks import Callback

    class PrintLog(Callback):
        def on_log(self, step, metrics):
            print(f"step {step}: loss {metrics['train/loss']:.4f}", flush=True)

    progress = PrintLog() if args.no_progress else RichProgress()
    try:
        evaluator = build_evaluator(cfg, predictions_dir=cfg.out_dir / PREDICTIONS)
        summary = Trainer(cfg, callbacks=[progress], evaluator=evaluator).fit()
    except ConfigError as err:
        return fail("ajepa-train", err)
    (cfg.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in summary.items()}, indent=2))
    print(f"checkpoint, metrics.jsonl, summary.json and per-clip test predictions are in {cfg.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
