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

from ajepa.cli.common import fail, guarded
from ajepa.config import (
    SUITES,
    TASK_KINDS,
    TASK_TYPES,
    ConfigError,
    SuiteConfig,
    TaskCommon,
    apply_overrides,
    build_config,
    dump_config,
    format_validation_error,
    parse_override,
    parse_task,
    task_location,
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
  ajepa-eval last.pt --suite general_audio --data-root /data --out suite.json
      (each task from /data/<its folder>: ESC-50-master, UrbanSound8K, speech_commands_v0.02,
      VoxCeleb1, CREMA-D, GTZAN, nsynth; see docs/DATASETS.md; task.* overrides apply to all)

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
    parser.add_argument("--task", choices=TASK_KINDS, help="the task (or --suite)")
    parser.add_argument("--suite", choices=tuple(SUITES), default=None,
                        help="evaluate a named group of tasks instead of one (needs --data-root)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="with --suite: the folder holding each task's dataset under its conventional name")
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
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after options
    if (args.task is None) == (args.suite is None):
        parser.error("give one of --task NAME or --suite NAME")
    if args.suite is not None and (args.data is not None or args.data_root is None):
        parser.error("--suite reads every task from --data-root DIR (each under its folder), not --data")
    return args


def task_from_args(args: argparse.Namespace, task_overrides: dict) -> TaskCommon:
    """The task config: ``--data`` is the manifest of a dataset read from one (when it is a
    file), else its root; a dataset located by root or manifest needs one of them."""
    fields: dict = {"task": args.task, "protocol": args.protocol, "name": args.name}
    task_type = TASK_TYPES[args.task]
    if args.data is not None:
        fields.update(task_location(args.task, args.data))
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


def load_checkpoint_for_eval(args: argparse.Namespace, config_overrides: dict):
    """(encoder on its device, the checkpoint's config + overrides, device)."""
    from ajepa.train.checkpoint import load_encoder

    encoder, saved_cfg = load_encoder(args.checkpoint, "target")
    tree = apply_overrides(dump_config(saved_cfg), config_overrides)
    if args.encoder is not None:
        tree["eval"]["encoder"] = args.encoder
    cfg = build_config(tree, source=f"{args.checkpoint} (saved config) + overrides")
    if cfg.eval.encoder != "target":
        encoder, _ = load_encoder(args.checkpoint, cfg.eval.encoder)
    device = resolve_device(args.device)
    return encoder.to(device), cfg, device


def main_suite(args: argparse.Namespace) -> int:
    """``--suite``: every task of the suite with one embedding memo (a clip two tasks read
    alike is encoded once), each task's table, then the suite mean."""
    started = time.perf_counter()
    try:
        config_overrides, task_overrides = split_overrides(args.overrides)
        suite = SuiteConfig(name=args.suite, data_root=args.data_root,
                            task={"protocol": args.protocol, **task_overrides})
        tasks = suite.tasks()
        from ajepa.eval.run import default_cache, evaluate_task, suite_metrics

        encoder, cfg, device = load_checkpoint_for_eval(args, config_overrides)
        shared: dict = {}
        results = [evaluate_task(encoder, task, cfg, cache=default_cache(cfg), device=device, shared=shared)
                   for task in tasks]
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"ajepa-eval: {err}", file=sys.stderr)
        return 2
    for result in results:
        print_results(result, args)
    metrics = {k: v for r in results for k, v in r.metrics.items()} | suite_metrics(suite.name, results)
    print(f"{suite.name}: mean {metrics[f'eval/suite/{suite.name}/mean']:.4f} over "
          + ", ".join(f"{r.task} {r.metrics[f'eval/{r.task}/{r.metric}']:.4f}" for r in results))
    if args.out is not None:
        payload = {
            "checkpoint": str(args.checkpoint), "suite": suite.name, "encoder": cfg.eval.encoder,
            "metrics": metrics, "seconds": time.perf_counter() - started,
            "tasks": {r.task: {"task": t.model_dump(mode="json"), "metric": r.metric, "metrics": r.metrics}
                      for r, t in zip(results, tasks)},
            "eval_config": dump_config(cfg)["eval"],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ajepa-eval``; errors a user can fix end in one line and exit code 2 (ajepa.cli.common)."""
    return guarded("ajepa-eval", lambda: run(argv))


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.suite is not None:
        return main_suite(args)
    try:
        config_overrides, task_overrides = split_overrides(args.overrides)
        task = task_from_args(args, task_overrides)
        from ajepa.eval.run import default_cache, evaluate_task

        encoder, cfg, device = load_checkpoint_for_eval(args, config_overrides)
        started = time.perf_counter()
        result = evaluate_task(encoder, task, cfg, cache=default_cache(cfg), device=device)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        return fail("ajepa-eval", err)
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
