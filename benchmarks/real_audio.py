"""Linear-probe accuracy on REAL recorded sounds: pretrained encoder vs its own initial
weights vs a log-mel-statistics baseline, in one table.

    python benchmarks/real_audio.py --checkpoint runs/tiny/checkpoints/last.pt
    python benchmarks/real_audio.py --checkpoint runs/s0 runs/s1 runs/s2    # + pooled over the seeds
    python benchmarks/real_audio.py --checkpoint runs/v0 runs/v1 --against runs/s0 runs/s1  # variant vs recipe
    python benchmarks/real_audio.py --config experiments/tiny.yaml [key=value ...]   # pretrain first
    python benchmarks/real_audio.py --checkpoint RUN eval.probe.pooling=mean_max      # another probe
    python benchmarks/real_audio.py --checkpoint RUN --task synthetic   # the same rows on the synthetic test split

The data is the dev set of ``benchmarks/real_devset.py`` (13 classes of game and desktop
sound effects from Debian packages, ESC-50 layout, 5 folds split by source recording;
built on first use when ``--data`` does not exist). Every row uses the project's default
linear-probe protocol exactly as ``ajepa-eval CHECKPOINT --task esc50 --data DEV`` runs
it (:func:`ajepa.eval.run.evaluate_task`: the checkpoint's frontend, mean-pooled
embeddings, standardised features, L2 picked on a validation split carved from the
training folds, 5-fold CV):

(a) ``pretrained``: the checkpoint's EMA target encoder;
(b) ``init``: the same architecture at its initial weights, rebuilt as the Trainer built
    it (``torch.manual_seed(cfg.seed)`` then ``AJEPA(cfg)``: its target encoder), so
    (a) - (b) is what pretraining added;
(c) ``log-mel stats``: per-mel-band mean and std over time of the very normalised
    log-mel input the encoder sees (``2 x num_mel_bins`` features), fed to the same probe
    (:func:`ajepa.eval.probe.probe_fold`, same fold seeds, same validation carving).

Normalisation (``frontend.norm``): with ``dataset`` (experiments/tiny.yaml) the dev set's
own ``stats.json`` is used, computed on first use exactly as ``ajepa-stats`` would
(``data.kind=esc50 data.root=DEV``), as ``ajepa-eval`` expects it; ``--norm-stats
pretrain`` feeds the encoder the pretraining data's statistics instead.
With several checkpoints (one per pretraining seed) it ends with the pooled comparison of
the pretrained row against the two others: mean accuracies, the difference per seed, and
the clip-level sign-flip test and seeds x clips bootstrap interval of ``analysis.clips``
(docs/STATISTICS.md), the same statistics as the sweep tables. ``--per-class`` adds each
class's accuracy. The target encoder's effective rank (``train/target_rank``, last logged value in the
run's ``metrics.jsonl``) is printed too, and the effective rank of each encoder's patch tokens
on 64 of the task's own clips (:func:`token_rank`: does the encoder collapse on real sound?).
``--json FILE`` writes ``{"command", "data", "checkpoints": [{"checkpoint", "seed", "step",
"target_rank", "token_rank": {encoder row: rank}, "results": {row: metrics}}], "pooled"}``
(the log-mel row has no tokens, so no token rank; ``pooled``, with several checkpoints or
``--against``, is :func:`print_pooled`'s summary).

Exit codes, as the ``ajepa-*`` commands: 0 done; 2 a request that cannot run as given
(no checkpoint, bad data folder, missing normalisation stats: one line says what to fix);
3 the pretraining diverged; 130 interrupted; 1 a bug (a traceback).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_devset beside this file

DEFAULT_DATA = Path(".cache/real_devset")
OVERRIDE = re.compile(r"^[A-Za-z_][\w.\[\]]*=")  # a dotted config key and "=": an override, not a path
TASK_NAME = "real"


# --------------------------------------------------------------------------- config and encoders


def pretrain(config: str, overrides: list[str]):
    """Pretrain as ``ajepa-train CONFIG overrides`` does (resumes a finished/partial run)."""
    from ajepa.config import load_config
    from ajepa.eval import build_evaluator
    from ajepa.train import Trainer
    from ajepa.train.callbacks import Callback
    from ajepa.train.checkpoint import checkpoint_path

    cfg = load_config(config, overrides)

    class PrintLog(Callback):
        def on_log(self, step, metrics):
            if step % max(cfg.log_every * 20, 1) == 0:
                print(f"  step {step}: loss {metrics['train/loss']:.4f}", flush=True)

    summary = Trainer(cfg, callbacks=[PrintLog()], evaluator=build_evaluator(cfg)).fit()
    (cfg.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return checkpoint_path(cfg.out_dir)


def checkpoint_file(path: Path) -> Path:
    """A run folder's ``checkpoints/last.pt`` (the Trainer's layout), or `path` itself."""
    from ajepa.train.checkpoint import checkpoint_path

    return checkpoint_path(path) if path.is_dir() else path


def initial_encoder(cfg):
    """The target encoder exactly as the Trainer initialised it (before any step)."""
    import torch

    from ajepa.models.jepa import AJEPA

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AJEPA(cfg)
    return model.target_encoder.eval()


def last_metric(run_dir: Path, key: str) -> tuple[float | None, int | None]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None, None
    value = step = None
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if key in row:
            value, step = float(row[key]), row.get("step")
    return value, step


# --------------------------------------------------------------------------- task


def ensure_devset(root: Path) -> None:
    if (root / "meta" / "esc50.csv").is_file():
        return
    import real_devset

    print(f"building the dev set at {root} (benchmarks/real_devset.py --out {root})", flush=True)
    code = real_devset.main(["--out", str(root)])
    if code:
        raise SystemExit(code)


def dataset_stats(cfg, root: Path) -> None:
    """Write ``root/stats.json`` as ``ajepa-stats CONFIG data.kind=esc50 data.root=ROOT`` would,
    unless one computed under the same fbank settings is there."""
    from ajepa.audio.features import NormStatsError, fbank_settings, resolve_norm_stats, write_norm_stats
    from ajepa.data.stats import compute_norm_stats
    from ajepa.data.tasks import build_pretrain_dataset

    try:
        resolve_norm_stats(cfg.frontend, root, cfg.data.sample_rate)
        return
    except NormStatsError:
        pass
    stats_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"kind": "esc50", "root": root})})
    dataset = build_pretrain_dataset(stats_cfg, normalise=False)
    mean, std, used = compute_norm_stats(dataset)
    write_norm_stats(root, mean, std, fbank_settings(cfg.frontend, cfg.data.sample_rate), num_clips=used,
                     dataset_clips=len(dataset), data_kind="esc50", config="benchmarks/real_audio.py")
    print(f"dev-set normalisation stats: mean={mean:.4f} std={std:.4f} ({used} clips) -> {root}/stats.json")


def build_dev_task(cfg, root: Path, norm_source: str):
    from ajepa.audio.features import resolve_norm_stats
    from ajepa.config import ESC50Task
    from ajepa.data.tasks import build_task, pretrain_stats_location

    task = ESC50Task(root=root, protocol="linear", name=TASK_NAME)
    norm_stats = None
    if cfg.frontend.norm == "dataset":
        if norm_source == "pretrain":
            norm_stats = resolve_norm_stats(cfg.frontend, pretrain_stats_location(cfg.data), cfg.data.sample_rate)
        else:
            dataset_stats(cfg, root)
    task_data = build_task(task, cfg.frontend, cfg.data.sample_rate, cfg.data.cache_dir, data=cfg.data,
                           norm_stats=norm_stats)
    return task, task_data


# --------------------------------------------------------------------------- the log-mel baseline


def logmel_stats_embeddings(task_data) -> dict:
    """``{(fold, split): Embeddings}`` of per-band mean and std over time of each item's
    ``spec`` (the normalised, cropped/padded log-mel the encoder is fed), each clip once."""
    from ajepa.eval.embeddings import Embeddings
    from ajepa.eval.run import SPLITS, clip_key

    cache: dict = {}
    out = {}
    for fold in task_data.folds:
        for split in SPLITS:
            dataset = getattr(fold, split)
            if dataset is None:
                continue
            features, labels = [], []
            for i in range(len(dataset)):
                key = clip_key(dataset, i)
                key = key if key is not None else (id(dataset), i)
                if key not in cache:
                    item = dataset[i]
                    spec = np.asarray(item["spec"], dtype=np.float64)[0]  # [F, T]
                    cache[key] = (np.concatenate([spec.mean(1), spec.std(1)]).astype(np.float32),
                                  np.asarray(item["label"]))
                feature, label = cache[key]
                features.append(feature)
                labels.append(label)
            out[(str(fold.name), split)] = Embeddings(np.stack(features), np.stack(labels).astype(np.int64),
                                                      np.arange(len(features), dtype=np.int64))
    return out


def probe_arrays(embeddings: dict, task_data, cfg,
                 task_name: str = TASK_NAME) -> tuple[dict[str, float], list[dict]]:
    """The per-fold loop of :func:`ajepa.eval.run.probe_encoder`, on given arrays: the
    aggregated metrics and one :func:`ajepa.eval.run.prediction_rows` row per test clip."""
    from ajepa.eval.metrics import aggregate_folds
    from ajepa.eval.probe import probe_fold
    from ajepa.eval.run import fold_seed, prediction_rows, task_clip_root

    seed = cfg.eval.seed if cfg.eval.seed is not None else cfg.seed
    per_fold, names, outcomes = [], [], []
    for position, fold in enumerate(task_data.folds):
        name = str(fold.name)
        result = probe_fold(
            embeddings[(name, "train")], embeddings.get((name, "val")), embeddings[(name, "test")],
            task_data.num_classes, task_data.multilabel, task_data.metric, cfg.eval.probe,
            fold_seed(seed, position), train_groups=getattr(fold.train, "groups", None),
        )
        per_fold.append(result.metrics)
        names.append(name)
        if result.test_predictions is not None:
            outcomes += prediction_rows(name, fold.test, result.test_labels, result.test_predictions,
                                        result.test_index, task_clip_root(task_data))
    return aggregate_folds(task_name, per_fold, names), outcomes


def per_class_accuracy(outcomes: list[dict], num_classes: int) -> np.ndarray:
    """Accuracy within each true class from single-label prediction rows (NaN for a class
    with no test clip)."""
    hits, totals = np.zeros(num_classes), np.zeros(num_classes)
    for row in outcomes:
        label = int(row["label"])
        totals[label] += 1
        hits[label] += label == int(row["prediction"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / totals


def print_per_class(rows, task_data) -> None:
    if task_data.multilabel:
        print("per-class accuracy: not for multi-label tasks")
        return
    names = task_data.class_names
    table = [per_class_accuracy(outcomes, task_data.num_classes) for _, _, outcomes in rows]
    width = max(len(n) for n in names) + 2
    print(f"{'class':<{width}}" + "".join(f"{label.split(' (')[0]:>14}" for label, _, _ in rows))
    for k, class_name in enumerate(names):
        print(f"{class_name:<{width}}" + "".join(f"{row[k]:>14.2f}" for row in table))


# --------------------------------------------------------------------------- main


def token_rank(encoder, task_data, device, input_mode: str = "whole", avg_last_k: int = 1,
               clips: int = 64, rows: int = 2048) -> float:
    """Effective rank of ``encoder``'s patch tokens on the task's own clips: the issue's "no
    collapse on real audio" check (``train/target_rank`` measures the pretraining batches).

    ``clips`` test clips evenly spaced over the folds (each clip is in one test fold), all
    their tokens, then ``rows`` of them drawn with a fixed seed, so every row of a table is
    measured on the same tokens' positions. ``input_mode`` and ``avg_last_k`` are the
    probe's (``eval.probe.input`` / ``avg_last_k``), so the rank is that of what it reads.
    """
    import torch

    from ajepa.eval.embeddings import encode_tokens
    from ajepa.models.objectives import effective_rank

    items = [(fold.test, i) for fold in task_data.folds for i in range(len(fold.test))]
    picks = np.unique(np.linspace(0, len(items) - 1, min(clips, len(items))).round().astype(int))
    tokens, adapted = [], {}
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for k in picks:
                dataset, i = items[k]
                spec = torch.as_tensor(dataset[i]["spec"]).float()[None].to(device)
                tokens.append(encode_tokens(encoder, spec, avg_last_k, input_mode, adapted)[0][0].float().cpu())
    finally:
        encoder.train(was_training)
    tokens = torch.cat(tokens)
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(0))[:rows]
    return effective_rank(tokens[order], max_rows=rows)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="real_audio", description="Probe accuracy on real sounds: pretrained vs initial weights vs log-mel stats.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", nargs="+",
                        help="pretraining checkpoint(s) (…/checkpoints/last.pt) or run folder(s); with several (one "
                             "per seed) also the pooled comparison over them")
    source.add_argument("--config", help="experiment YAML to pretrain first with the Trainer (then its last.pt)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="with --config: dotted config overrides; with --checkpoint: eval.* overrides only "
                             "(the probe protocol, applied to all three rows)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"dev set folder (default {DEFAULT_DATA}; built when missing)")
    parser.add_argument("--norm-stats", choices=("task", "pretrain"), default="task",
                        help="with frontend.norm=dataset: the dev set's own stats (default, as ajepa-eval) or "
                             "the pretraining data's")
    parser.add_argument("--task", choices=("dev", "synthetic"), default="dev",
                        help="'dev': the real-sound dev set (default); 'synthetic': the checkpoint's own "
                             "synthetic test split, the same three rows (pretrained / init / log-mel)")
    parser.add_argument("--encoder", choices=("target", "context"), default="target",
                        help="which pretrained encoder to probe (default the EMA target, as ajepa-eval)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--against", nargs="+", default=None, metavar="RUN",
                        help="another recipe's runs, one per seed in the order of --checkpoint: adds the pooled "
                             "comparison of the two recipes' pretrained rows")
    parser.add_argument("--per-class", action="store_true",
                        help="also print each class's accuracy for the three rows (which sounds pretraining helps "
                             "or hurts)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_intermixed_args(argv)
    for option in ("checkpoint", "against"):  # "--checkpoint A B key=value": nargs also swallows the overrides
        given = getattr(args, option)
        if given:
            moved = [a for a in given if OVERRIDE.match(a) and not Path(a).exists()]
            args.overrides = moved + args.overrides
            setattr(args, option, [Path(a) for a in given if a not in moved])
            if not getattr(args, option):
                parser.error(f"--{option} needs at least one checkpoint or run folder")
    evaluated = len(args.checkpoint) if args.checkpoint else 1
    if args.against and len(args.against) != evaluated:
        parser.error(f"--against names {len(args.against)} runs for {evaluated} evaluated: give one reference run "
                     "per seed, in the same order")
    if args.task == "synthetic" and (args.data != DEFAULT_DATA or args.norm_stats != "task"):
        parser.error("--data and --norm-stats describe the dev set; --task synthetic reads the checkpoint's own "
                     "synthetic set with its own statistics")
    if args.config is None and (bad := [o for o in args.overrides if not o.startswith("eval.")]):
        parser.error(f"with --checkpoint only eval.* overrides apply (the encoder is fixed): {' '.join(bad)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/real_audio.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    from ajepa.cli.common import guarded

    # the ajepa-* commands' error contract: a fixable error is one line and exit code 2
    return guarded("real_audio", lambda: run(args, command))


def run(args, command: str) -> int:
    references = [checkpoint_file(c) for c in args.against or []]
    if missing := [str(c) for c in references if not c.is_file()]:  # before any pretraining
        print(f"real_audio: no reference checkpoint at {', '.join(missing)}", file=sys.stderr)
        return 2
    checkpoints = [pretrain(args.config, args.overrides)] if args.config else list(args.checkpoint)
    checkpoints = [checkpoint_file(c) for c in checkpoints]
    if missing := [str(c) for c in checkpoints if not c.is_file()]:
        print(f"real_audio: no checkpoint at {', '.join(missing)} (give a run folder or its "
              "checkpoints/last.pt, or pretrain one with --config)", file=sys.stderr)
        return 2
    if args.task == "dev":
        ensure_devset(args.data)
    results = []
    for checkpoint in checkpoints:
        results.append(evaluate_checkpoint(checkpoint, args))
        print_checkpoint(results[-1], args, command)
    against = [evaluate_checkpoint(checkpoint, args, pretrained_only=True) for checkpoint in references]
    pooled = print_pooled(results, against) if len(results) > 1 or against else None
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": command, "data": str(args.data),
            "checkpoints": [{"checkpoint": str(r["checkpoint"]), "seed": r["seed"], "step": r["step"],
                             "target_rank": r["rank"], "token_rank": r["token_ranks"],
                             "results": {label: metrics for label, metrics, _ in r["rows"]}} for r in results],
            **({"pooled": pooled} if pooled is not None else {}),
        }, indent=2))
    return 0


def evaluate_checkpoint(checkpoint: Path, args, pretrained_only: bool = False) -> dict:
    """The three rows (pretrained / init / log-mel stats) of one checkpoint, each with its
    metrics and per-clip test outcomes; only the first with `pretrained_only` (a
    ``--against`` reference, compared on that row alone)."""
    import torch

    from ajepa.config import apply_overrides, build_config, dump_config
    from ajepa.eval.run import default_cache, evaluate_task, task_prefix
    from ajepa.train.checkpoint import load_encoder

    started = time.perf_counter()
    pretrained, cfg = load_encoder(checkpoint, args.encoder)
    if args.checkpoint is not None and args.overrides:
        cfg = build_config(apply_overrides(dump_config(cfg), args.overrides), f"{checkpoint} + overrides")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.task == "dev":
        task, task_data = build_dev_task(cfg, args.data, args.norm_stats)
    else:
        from ajepa.config import SyntheticTask
        from ajepa.eval.run import build_task_data

        task = SyntheticTask()
        task_data = build_task_data(task, cfg)
    name = task_prefix(task)
    cache = default_cache(cfg)

    rows = []
    pretrained_label = "pretrained (EMA target)" if args.encoder == "target" else "pretrained (context)"
    encoders = [(pretrained_label, pretrained)]
    if not pretrained_only:
        encoders.append(("init (same arch, seed)", initial_encoder(cfg)))
    token_ranks = {}
    for label, encoder in encoders:
        result = evaluate_task(encoder.to(device), task, cfg, task_data=task_data, cache=cache, device=device)
        rows.append((label, result.metrics, result.predictions))
        if not pretrained_only:
            token_ranks[label] = token_rank(encoder, task_data, device, cfg.eval.probe.input,
                                           cfg.eval.probe.avg_last_k)
    if not pretrained_only:
        rows.append((f"log-mel stats ({2 * cfg.frontend.num_mel_bins}-d)",
                     *probe_arrays(logmel_stats_embeddings(task_data), task_data, cfg, name)))
    run_dir = checkpoint.parent.parent
    rank, rank_step = last_metric(run_dir, "train/target_rank")
    _, last_step = last_metric(run_dir, "train/loss")
    return {"checkpoint": checkpoint, "cfg": cfg, "seed": cfg.seed, "name": name, "task_data": task_data,
            "rows": rows, "rank": rank, "rank_step": rank_step, "step": last_step, "token_ranks": token_ranks,
            "width": pretrained.dim,
            "seconds": time.perf_counter() - started}


def print_checkpoint(result: dict, args, command: str) -> None:
    cfg, task_data, name = result["cfg"], result["task_data"], result["name"]
    classes = task_data.num_classes
    clips = sum(len(f.test) for f in task_data.folds)  # every clip is in exactly one test fold
    print()
    where = f"real-sound dev set {args.data}" if args.task == "dev" else "synthetic test split"
    print(f"{where}: {clips} clips, {classes} classes, {len(task_data.folds)} folds "
          f"(chance {1 / classes:.3f}); probe: {cfg.eval.probe.pooling} pooling, {cfg.eval.probe.solver}, "
          f"L2 grid {cfg.eval.probe.l2_grid}")
    print(f"checkpoint {result['checkpoint']} (step {result['step']}, seed {cfg.seed}); norm {cfg.frontend.norm}"
          f"{' (' + args.norm_stats + ' stats)' if cfg.frontend.norm == 'dataset' else ''}")
    print(f"{'encoder':<28}{'accuracy':>10}{'± std':>8}   per fold")
    for label, metrics, _ in result["rows"]:
        folds = [metrics[k] for k in sorted(metrics) if k.endswith("/acc") and "/fold" in k]
        print(f"{label:<28}{metrics[f'eval/{name}/acc']:>10.3f}{metrics[f'eval/{name}/acc_std']:>8.3f}   "
              + " ".join(f"{v:.3f}" for v in folds))
    if args.per_class:
        print_per_class(result["rows"], task_data)
    rank = result["rank"]
    print(f"train/target_rank: {rank:.2f} (step {result['rank_step']})" if rank is not None
          else "train/target_rank: not in the run's metrics.jsonl")
    if result["token_ranks"]:
        print(f"effective rank of the patch tokens on these clips (of {result['width']}): "
              + ", ".join(f"{label} {value:.1f}" for label, value in result["token_ranks"].items()))
    print(f"evaluated in {result['seconds']:.0f} s; command: {command}")


def print_pooled(results: list[dict], against: list[dict] | None = None) -> dict | None:
    """Pretrained against each other row over all checkpoints (seeds): the mean accuracies,
    the per-seed differences, and the project's clip-level test and seeds x clips interval
    (:mod:`analysis.clips`), as the sweep tables report them. With `against` (another
    recipe's checkpoints, one per seed in the same order) also pretrained against that
    recipe's pretrained row: a variant judged on all its seeds and clips, not on one seed.

    Returns what it printed, as fractions, for ``--json``: ``{"seeds", "mean_acc": {row:
    acc}, "pretrained_minus": {row: {"diff", "low", "high", "p", "per_seed"}}}`` (None when
    the outcomes are not single-label)."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from analysis.clips import clip_comparison, clip_pairs
    from analysis.tables import ROW

    labels = [label for label, _, _ in results[0]["rows"]]  # rows are matched by position: pretrained, init, log-mel
    frames = []
    for position, result in enumerate(results):
        rows = list(result["rows"])
        if against:
            rows.append(against[position]["rows"][0])
        for row, (_, _, predictions) in enumerate(rows):
            frame = pd.DataFrame(predictions)
            # a checkpoint is one seed (even if two share cfg.seed); rows by position
            frame["task"], frame[ROW], frame["seed"] = results[0]["name"], row, position
            frames.append(frame)
    outcomes = pd.concat(frames, ignore_index=True)
    if outcomes.empty or outcomes["correct"].eq("").any():
        print("pooled comparison: needs single-label per-clip outcomes")
        return None
    outcomes["correct"] = outcomes["correct"].astype(float)
    name = results[0]["name"]
    seeds = ", ".join(str(r["seed"]) for r in results)
    mean_acc = {label: float(np.mean([r["rows"][k][1][f"eval/{name}/acc"] for r in results]))
                for k, label in enumerate(labels)}
    print()
    print(f"pooled over {len(results)} checkpoints (seeds {seeds}): mean accuracy "
          + ", ".join(f"{label.split(' (')[0]} {acc:.3f}" for label, acc in mean_acc.items()))
    if against:
        labels.append("reference recipe (--against)")
        mean_acc[labels[-1]] = float(np.mean([r["rows"][0][1][f"eval/{name}/acc"] for r in against]))
        print(f"  reference recipe: {mean_acc[labels[-1]]:.3f} "
              f"({', '.join(str(r['checkpoint']) for r in against)})")
    summary = {"seeds": [r["seed"] for r in results], "mean_acc": mean_acc, "pretrained_minus": {}}
    for row, reference in enumerate(labels[1:], start=1):
        pairs = clip_pairs(outcomes, name, row=0, reference=row)
        line = clip_comparison(pairs)
        per_seed = pairs.assign(d=pairs["a"] - pairs["b"]).groupby("seed")["d"].mean().to_numpy()
        print(f"  pretrained - {reference.split(' (')[0]}: {100 * line['diff']:+.1f} points "
              f"(95 % CI seeds x clips {100 * line['low']:+.1f} .. {100 * line['high']:+.1f}; clip-level p "
              f"{line['p']:.3g}); per seed " + " ".join(f"{100 * v:+.1f}" for v in per_seed))
        summary["pretrained_minus"][reference] = {
            **{key: float(line[key]) for key in ("diff", "low", "high", "p")},
            "per_seed": per_seed.tolist()}
    return summary


if __name__ == "__main__":
    sys.exit(main())
