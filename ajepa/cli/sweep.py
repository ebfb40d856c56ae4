"""`ajepa-sweep SPEC.yaml`: run an ablation sweep end to end (Ray Tune + MLflow).

Everything that can be wrong with the request -- the spec, the trial configs, the
resources, a resume into a different experiment -- is checked before Ray starts; those
errors exit with code 2. Exit code 1: some trials failed for good; 130: interrupted
(re-run the same command to resume); 0: every trial finished.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ajepa.cli.common import guarded
from ajepa.config import ConfigError

EPILOG = """\
examples:
  ajepa-sweep sweeps/masking.yaml --dry-run          # the trials, their count and cost; starts nothing
  ajepa-sweep sweeps/masking.yaml                    # run on a local Ray (tiny base: minutes on a laptop)
  ajepa-sweep sweeps/masking.yaml                    # again after Ctrl-C: resumes, finished trials are kept
  ajepa-sweep sweeps/ratio.yaml --base experiments/paper_vitb.yaml --gpus-per-trial 1 \\
      --cpus-per-trial 16 --address auto --tracking-uri http://mlflow-host:5000 --storage /shared/sweeps
  ajepa-sweep sweeps/masking.yaml --evaluate urbansound8k --evaluate-data /data/UrbanSound8K
                                                     # a finished sweep on a new task, no retraining
  ajepa-sweep sweeps/masking.yaml --evaluate esc50 --evaluate-data /data/ESC-50 --at-steps all
                                                     # also at every kept checkpoint: learning curves

exit codes: 0 all trials finished (or evaluated), 1 some failed, 2 invalid spec/resources (nothing started),
130 interrupted (re-run to resume). Spec reference: docs/SWEEPS.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ajepa-sweep", description="Run an A-JEPA ablation sweep: Ray Tune schedules the trials, "
        "MLflow records them, the ablation table is printed at the end.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="sweep YAML, e.g. sweeps/masking.yaml")
    p.add_argument("--base", help="experiment YAML replacing the spec's base (e.g. experiments/paper_vitb.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the trials, their number and cost; start nothing")
    p.add_argument("--resume", action="store_true",
                   help="insist on resuming (a plain re-run resumes too when state exists)")
    p.add_argument("--fresh", action="store_true",
                   help="discard this sweep's Ray state and checkpoints and start over (MLflow runs are kept)")
    p.add_argument("--retry-failed", action="store_true",
                   help="on resume, also retry trials that failed for good, from their checkpoints")
    p.add_argument("--address", help="join an existing Ray cluster ('auto', host:6379, ray://host:10001)")
    p.add_argument("--num-cpus", type=float, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument("--num-gpus", type=float, help="GPUs of the local Ray cluster (default: all visible)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite under the storage folder)")
    p.add_argument("--storage", help="storage folder for Ray state, checkpoints and the default MLflow store "
                   "(shared by all nodes on a cluster)")
    p.add_argument("--max-concurrent", type=int, help="cap on trials running at once")
    p.add_argument("--cpus-per-trial", type=float, help="override resources.cpu (per worker with --workers)")
    p.add_argument("--gpus-per-trial", type=float, help="override resources.gpu, e.g. 1 with a GPU base")
    p.add_argument("--workers", type=int, help="override resources.workers (> 1: DDP per trial)")
    p.add_argument("--no-resource-check", action="store_true",
                   help="skip the resource check (autoscaling clusters that add GPU nodes on demand)")
    p.add_argument("--quiet", action="store_true", help="no live trial table")
    p.add_argument("--evaluate", metavar="TASK",
                   help="evaluate the finished trials again on TASK (a task name, e.g. esc50, or a YAML mapping "
                   "'{task: esc50, root: /data/ESC-50}') without retraining; metrics land in their MLflow runs")
    p.add_argument("--evaluate-data", metavar="PATH", help="with --evaluate: the task's root (or manifest)")
    p.add_argument("--at-steps", metavar="all|N,M",
                   help="with --evaluate: also the checkpoints kept during pretraining (keep_checkpoints), all of "
                   "them or these steps; each lands at its step (probe learning curves, ajepa-tables --at-step N)")
    p.add_argument("--eval-override", metavar="KEY=VALUE", action="append", default=[],
                   help="with --evaluate: a dotted override of the evaluation, e.g. eval.probe.pooling=mean_max")
    return p


def check_where(sweep) -> None:
    """The storage folder and the tracking URI, refused in one line before anything starts."""
    from urllib.parse import urlparse

    if sweep.storage.exists() and not sweep.storage.is_dir():
        raise ConfigError(f"storage {sweep.storage} is a file, not a folder (--storage, or the spec's `storage:`)")
    scheme = urlparse(sweep.tracking_uri).scheme.split("+", 1)[0]  # postgresql+psycopg2://
    known = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
    if scheme not in known and len(scheme) != 1:  # one letter: a Windows drive
        raise ConfigError(f"tracking URI {sweep.tracking_uri!r}: unknown scheme {scheme!r} (--tracking-uri, or the "
                          "spec's `tracking.uri:`); use http://host:5000, sqlite:///ABS/mlflow.db or a folder")


def main(argv: list[str] | None = None) -> int:
    """``ajepa-sweep``; errors a user can fix end in one line and exit code 2 (ajepa.cli.common)."""
    return guarded("ajepa-sweep", lambda: run(argv))


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value in (("--at-steps", args.at_steps), ("--evaluate-data", args.evaluate_data),
                        ("--eval-override", args.eval_override)):
        if value and not args.evaluate:
            parser.error(f"{flag} needs --evaluate TASK")
    console = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    from ajepa.sweep.spec import load_sweep

    try:
        resources = {k: v for k, v in (("cpu", args.cpus_per_trial), ("gpu", args.gpus_per_trial),
                                        ("workers", args.workers)) if v is not None}
        sweep = load_sweep(args.spec, base=args.base, storage=args.storage, tracking_uri=args.tracking_uri,
                           resources=resources)
        check_where(sweep)
        if args.evaluate:
            from ajepa.sweep.evaluate import evaluate_sweep, parse_steps, parse_task

            steps = parse_steps(args.at_steps)
            task = parse_task(args.evaluate, args.evaluate_data)
            if args.address:  # the cluster's nodes evaluate, one Ray task per checkpoint
                import ray

                ray.init(address=args.address)
            outcome = evaluate_sweep(sweep, task, args.eval_override, echo=console.print, steps=steps,
                                     on_ray=bool(args.address))
            console.print(f"evaluated {len(outcome.evaluated)} checkpoints of {len(outcome.steps)} runs; "
                          f"skipped {len(outcome.skipped)} runs"
                          + "".join(f"\n  {k}: {why}" for k, why in outcome.skipped.items()))
            if outcome.failed:
                err.print(f"{len(outcome.failed)} evaluations failed (re-run to retry them):"
                          + "".join(f"\n  {k}: {why}" for k, why in outcome.failed.items()))
                return 1
            return 0
        if args.dry_run:
            from ajepa.sweep.resources import local_resources
            from ajepa.sweep.summary import print_dry_run

            cluster = None if args.address else local_resources(args.num_cpus, args.num_gpus)
            print_dry_run(sweep, console, cluster)
            return 0
        from ajepa.sweep.runner import RunOptions, run_sweep
        from ajepa.sweep.summary import print_outcome

        opts = RunOptions(address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                          max_concurrent=args.max_concurrent, resume=args.resume, fresh=args.fresh,
                          retry_failed=args.retry_failed, check_resources=not args.no_resource_check,
                          verbose=0 if args.quiet else 1, echo=console.print)
        outcome = run_sweep(sweep, opts)
    except ConfigError as e:  # SpecError and ResourceError included
        err.print(f"ajepa-sweep: {e}", markup=False, highlight=False)
        return 2
    print_outcome(outcome, console)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
