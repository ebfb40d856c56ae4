"""The trainer's only window to the outside world.

`train/` imports neither Ray nor MLflow: the sweep layer forwards these calls to them,
the CLI shows a progress bar, and tests record them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Callback:
    """Hooks the trainer calls; every method is optional."""

    def on_start(self, trainer: Any) -> None: ...

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_end(self, status: str, summary: dict[str, Any]) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    def on_start(self, trainer):
        for cb in self.callbacks:
            cb.on_start(trainer)

    def on_log(self, step, metrics):
        for cb in self.callbacks:
            cb.on_log(step, metrics)

    def on_eval(self, step, metrics):
        for cb in self.callbacks:
            cb.on_eval(step, metrics)

    def on_checkpoint(self, step, path):
        for cb in self.callbacks:
            cb.on_checkpoint(step, path)

    def on_end(self, status, summary):
        for cb in self.callbacks:
            cb.on_end(status, summary)


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl. A line that is not a JSON object (the torn last line
    of a run killed mid-write) is skipped: it holds no finished record."""
    records = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class MetricsFile(Callback):
    """Appends every logged and evaluated metric dict to ``out_dir/metrics.jsonl``.

    On resume, records past the resumed step (written after the last checkpoint by the
    interrupted run) and a torn last line are dropped, so the file reads as one
    uninterrupted run.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_start(self, trainer):
        if self.path.exists():
            kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= trainer.step]
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text("".join(json.dumps(record) + "\n" for record in kept))
            os.replace(tmp, self.path)

    def _append(self, record: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def on_log(self, step, metrics):
        self._append({"step": step, **metrics})

    def on_eval(self, step, metrics):
        self._append({"step": step, **metrics})


class RichProgress(Callback):
    """A terminal progress bar with the latest loss, for `ajepa-train`."""

    def __init__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]pretraining"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        )
        self.task = None

    def on_start(self, trainer):
        self.progress.start()
        self.task = self.progress.add_task("train", total=trainer.total_steps, completed=trainer.step, info="")

    def on_log(self, step, metrics):
        info = f"loss {metrics['train/loss']:.4f}  {metrics['train/samples_per_s']:.0f} samples/s"
        self.progress.update(self.task, completed=step, info=info)

    def on_eval(self, step, metrics):
        self.progress.console.print(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))

    def on_end(self, status, summary):
        self.progress.stop()
