"""`ajepa-eval`: evaluate a pretraining checkpoint on one downstream task.

The checkpoint carries its own config (frontend, sample rate, cache folder), so a task is
always read exactly as the encoder was trained to see it; dotted overrides change the
evaluation protocol (``probe.l2_grid=[1e-3,1e-2]``), the task (``task.folds=[1,2]``) or,
deliberately, the frontend/data sections (``frontend.norm=dataset``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from ajepa.config import (
    TASK_KINDS,
    TASK_TYPES,
    ConfigError,
    TaskCommon,
    apply_overrides,
    build_config,
    dump_config,
    format_validation_error,
    parse_override,
    parse_task,
)

EPILOG = """\
examples:
  ajepa-eval runs/tiny/checkpoints/last.pt --task synthetic
  ajepa-eval last.pt --task esc50 --data /data/ESC-50-master --out esc50.json
  ajepa-eval last.pt --task esc50 --data /data/ESC-50-master probe.pooling=freq_concat task.folds=[1]
  ajepa-eval last.pt --task speechcommands --data /data/speech_commands_v0.02 --protocol finetune \\
      finetune.epochs=30 finetune.regularized_masking.mode=drop
  ajepa-eval last.pt --task audioset --data /data/audioset/balanced_train.json \\
      task.test_manifest=/data/audioset/eval.json

Overrides: `key=value` with keys of the `eval` section (a leading `eval.` is optional),
`task.<field>` for the task (folds, max_clips, target_frames, esc10, classes, name, ...),
or `frontend.<field>` / `data.<field>` to change how the checkpoint's config reads audio.
Values are parsed as YAML.
"""

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ajepa-eval", description="Linear-probe or fine-tune a pretrained A-JEPA encoder on a task.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="pretraining checkpoint, e.g. runs/x/checkpoints/last.pt")
    parser.add_argument("--task", required=True, choices=TASK_KINDS)
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset root, or the manifest file of a task that has one ("
                        + ", ".join(k for k, t in TASK_TYPES.items() if "manifest" in t.model_fields) + ")")
    parser.add_argument("--protocol", choices=("linear", "finetune"), default="linear")
    parser.add_argument("--encoder", choices=("target", "context"), default=None,
                        help="which encoder of the checkpoint (default: eval.encoder, i.e. the EMA target)")
    parser.add_argument("--name", default=None, help="metric prefix (default: the task kind)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides (see below)")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after options


def task_from_args(args: argparse.Namespace, task_overrides: dict) -> TaskCommon:
    """The task config: ``--data`` is the manifest of a dataset read from one (when it is a
    file), else its root; a dataset located by root or manifest needs one of them."""
    fields: dict = {"task": args.task, "protocol": args.protocol, "name": args.name}
    task_type = TASK_TYPES[args.task]
    if args.data is not None:
        is_manifest = "manifest" in task_type.model_fields and args.data.is_file()
        fields["manifest" if is_manifest else "root"] = args.data
    elif task_type.located_by and not any(task_overrides.get(key) is not None for key in task_type.located_by):
        raise ConfigError(f"--task {args.task} needs --data PATH (the dataset folder or manifest)")
    try:
        return parse_task({**fields, **task_overrides})
    except ValidationError as err:
        message = format_validation_error(err, "ajepa-eval task arguments")
        raise ConfigError(message.replace("\n  ", "\n  task.")) from None


def split_overrides(items: list[str]) -> tuple[dict, dict]:
    """``key=value`` strings -> (config overrides with full dotted keys, task field overrides)."""
    config, task = {}, {}
    for item in items:
        key, value = parse_override(item)
        if key.startswith("task."):
            task[key[len("task."):]] = value
        elif key.split(".")[0] in ("frontend", "data", "eval"):
            config[key] = value
        else:
            config[f"eval.{key}"] = value
    return config, task


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is visible: use --device auto or cpu")
    return torch.device(name)


def print_results(result, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.task} ({result.protocol}, {args.checkpoint.name}) in {result.seconds:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(result.metrics):
        table.add_row(key, f"{result.metrics[key]:.4f}")
    console = Console()
    console.print(table)
    if result.folds:
        folds = Table(title="selection on validation (never on test)")
        folds.add_column("fold")
        keys = [k for k in result.folds[0].selection if not isinstance(result.folds[0].selection[k], (dict, list))]
        for key in keys:
            folds.add_column(key, justify="right")
        for fold in result.folds:
            folds.add_row(fold.name, *(_short(fold.selection[k]) for k in keys))
        console.print(folds)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config_overrides, task_overrides = split_overrides(args.overrides)
        task = task_from_args(args, task_overrides)
        from ajepa.eval.run import default_cache, evaluate_task
        from ajepa.train.checkpoint import load_encoder

        encoder, saved_cfg = load_encoder(args.checkpoint, "target")
        tree = apply_overrides(dump_config(saved_cfg), config_overrides)
        if args.encoder is not None:
            tree["eval"]["encoder"] = args.encoder
        cfg = build_config(tree, source=f"{args.checkpoint} (saved config) + overrides")
        if cfg.eval.encoder != "target":
            encoder, _ = load_encoder(args.checkpoint, cfg.eval.encoder)
        device = resolve_device(args.device)
        encoder = encoder.to(device)
        started = time.perf_counter()
        result = evaluate_task(encoder, task, cfg, cache=default_cache(cfg), device=device)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"ajepa-eval: {err}", file=sys.stderr)
        return 2
    print_results(result, args)
    if args.out is not None:
        payload = {
            "checkpoint": str(args.checkpoint), "task": task.model_dump(mode="json"), "encoder": cfg.eval.encoder,
            "metrics": result.metrics, "seconds": time.perf_counter() - started,
            "folds": [{"name": f.name, "metrics": f.metrics, "selection": f.selection} for f in result.folds],
            "eval_config": dump_config(cfg)["eval"],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
