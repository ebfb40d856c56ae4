"""The error probe (issue 11): malformed configs, overrides, specs, files and folder layouts
fed through the commands as a user would. Each must end with exit code 2, no traceback,
and the offending key or file named, before any training starts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ajepa.cli import eval as eval_cli
from ajepa.cli import sweep as sweep_cli
from ajepa.cli import tables as tables_cli
from ajepa.cli import train as train_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "tiny.yaml")

# (overrides, what the message must name)
BAD_OVERRIDES = [
    (["optim.lrr=1"], "optim.lrr"),
    (["optim.lr=-1"], "optim.lr"),
    (["optim.lr=.inf"], "optim.lr"),
    (["optim.lr=.nan"], "optim.lr"),
    (["optim.lr=[1e-3"], "optim.lr"),
    (["optim.lr=abc"], "optim.lr"),
    (["masking.strategy=foo"], "masking.strategy"),
    (["masking.num_blocks=0"], "masking.num_blocks"),
    (["masking.scale=[0.5, 0.1]"], "scale"),
    (["masking.masks_per_clip=0"], "masking.masks_per_clip"),
    (["loss.kind=huber"], "loss.kind"),
    (["loss.kind=l2", "loss.beta=2"], "loss.beta"),
    (["target.norm=foo"], "target.norm"),
    (["target.avg_last_k=0"], "target.avg_last_k"),
    (["model.preset=huge"], "model.preset"),
    (["model.encoder_dim=100", "model.encoder_heads=3"], "model.encoder_dim"),
    (["model.patch_size=[16]"], "model.patch_size"),
    (["model.drop_path=1.5"], "model.drop_path"),
    (["model.predictor_attention=cross"], "model.predictor_attention"),
    (["frontend.target_frames=8"], "target_frames"),
    (["frontend.norm=bogus"], "frontend.norm"),
    (["data.kind=esc50"], "data.root"),
    (["data.kind=imagenet"], "data.kind"),
    (["data.clip_seconds=-1"], "data.clip_seconds"),
    (["data.synthetic.num_clips=1"], "data.synthetic.num_clips"),
    (["device=tpu"], "device"),
    (["threads=0"], "threads"),
    (["seed=abc"], "seed"),
    (["keep_checkpoints=0"], "keep_checkpoints"),
    (["optim.batch_size=0"], "optim.batch_size"),
    (["optim.steps=0"], "optim.steps"),
    (["optim.precision=fp8"], "optim.precision"),
    (["optim.betas=[0.9]"], "optim.betas"),
    (["ema.start=2"], "ema.start"),
    (["eval.tasks=[{task: foo}]"], "eval.tasks"),
    (["eval.tasks=[{task: synthetic, folds: [1]}]"], "folds"),
    (["eval.every_steps=0"], "eval.every_steps"),
    (["eval.probe.pooling=median"], "eval.probe.pooling"),
    (["noequals"], "noequals"),
    (["=3"], "empty key"),
    (["optim=3"], "optim"),
    (["optim.lr.x=1"], "optim.lr.x"),
]


def run(main, argv, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"exit {rc} for {argv}: {err}"
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("overrides,named", BAD_OVERRIDES, ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_bad_overrides_are_one_clear_error(overrides, named, capsys, tmp_path):
    err = run(train_cli.main, [TINY, f"out_dir={tmp_path / 'run'}", *overrides], capsys)
    assert named in err
    assert not (tmp_path / "run").exists()  # nothing was written


@pytest.mark.parametrize("text,named", [
    ("", "sets nothing"),
    ("# a comment only\n", "sets nothing"),
    ("- a list\n", "mapping"),
    ("optim: {lr: [1\n", "not valid YAML"),
    ("optim:\n  lr: 1.0e-3\n  lr: 2.0e-3\n", "duplicate key 'lr'"),
    ("optim: 3\n", "optim"),
])
def test_bad_experiment_files_are_named(text, named, capsys, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    err = run(train_cli.main, [str(path)], capsys)
    assert named in err and "exp.yaml" in err or named in err


def write_wav(path: Path, seconds: float = 0.5, value: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.full(int(16000 * seconds), value, np.float32) if value is not None else \
        0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds)).astype(np.float32)
    soundfile.write(path, wave, 16000, subtype="FLOAT")  # float, so a NaN stays a NaN
    return path


def esc50(root: Path, rows=None) -> Path:
    (root / "meta").mkdir(parents=True)
    rows = rows or [[f"{f}-1-A-0.wav", f, 0, "dog", "True", "1", "A"] for f in range(1, 6)]
    for row in rows:
        if not str(row[0]).startswith("missing"):
            write_wav(root / "audio" / row[0])
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"],
                                      *rows])
    return root


def layouts(tmp: Path) -> list[tuple[list[str], str]]:
    """(overrides for ajepa-train, what the message must name), each a broken dataset."""
    (tmp / "empty").mkdir()
    (tmp / "afile").write_text("x")
    write_wav(tmp / "corrupt" / "a" / "ok.wav")
    (tmp / "corrupt" / "b").mkdir()
    (tmp / "corrupt" / "b" / "bad.wav").write_bytes(b"RIFF\x00\x00garbage")
    write_wav(tmp / "zero" / "a" / "ok.wav")
    (tmp / "zero" / "b").mkdir()
    (tmp / "zero" / "b" / "empty.wav").write_bytes(b"")
    write_wav(tmp / "nan" / "a" / "ok.wav")
    write_wav(tmp / "nan" / "b" / "nan.wav", value=float("nan"))
    esc50(tmp / "esc_fold7", [[f"{f}-1-A-0.wav", 7 if f == 5 else f, 0, "dog", "True", "1", "A"]
                              for f in range(1, 6)])
    esc50(tmp / "esc_missing", [[f"{f}-1-A-0.wav", f, 0, "dog", "True", "1", "A"] for f in range(1, 5)]
          + [["missing.wav", 5, 0, "dog", "True", "1", "A"]])
    (tmp / "esc_nocsv" / "audio").mkdir(parents=True)
    (tmp / "manifest.csv").write_text("file,label\na.wav,x\n")
    (tmp / "manifest2.csv").write_text("path,label\nnowhere.wav,x\n")
    (tmp / "sc").mkdir()
    folder = ["data.kind=folder", "data.clip_seconds=0.5", "frontend.target_frames=48",
              "optim.batch_size=1", "eval.tasks=[]"]
    return [
        ([*folder, f"data.root={tmp / 'nonexistent'}"], "nonexistent"),
        ([*folder, f"data.root={tmp / 'afile'}"], "afile"),
        ([*folder, f"data.root={tmp / 'empty'}"], "empty"),
        ([*folder, f"data.root={tmp / 'corrupt'}"], "bad.wav"),
        ([*folder, f"data.root={tmp / 'zero'}"], "empty.wav"),
        ([*folder, f"data.root={tmp / 'nan'}"], "nan.wav"),
        ([*folder, "data.kind=esc50", f"data.root={tmp / 'esc_fold7'}"], "fold"),
        ([*folder, "data.kind=esc50", f"data.root={tmp / 'esc_missing'}"], "missing.wav"),
        ([*folder, "data.kind=esc50", f"data.root={tmp / 'esc_nocsv'}"], "esc50.csv"),
        ([*folder, "data.kind=manifest", f"data.manifest={tmp / 'manifest.csv'}"], "manifest.csv"),
        ([*folder, "data.kind=manifest", f"data.manifest={tmp / 'manifest2.csv'}"], "nowhere.wav"),
        ([*folder, "data.kind=manifest", f"data.manifest={tmp / 'no.csv'}"], "no.csv"),
        ([*folder, "data.kind=speechcommands", f"data.root={tmp / 'sc'}"], "sc"),
        ([*folder, "data.kind=audioset", f"data.root={tmp / 'empty'}"], "empty"),
        ([*folder, f"data.root={tmp / 'corrupt' / 'a'}", f"out_dir={tmp / 'afile'}"], "afile"),
    ]


def test_broken_datasets_and_paths_are_named(capsys, tmp_path):
    for overrides, named in layouts(tmp_path):
        argv = [TINY, f"out_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}", *overrides]
        err = run(train_cli.main, argv, capsys)
        assert named in err, (overrides, err)


def test_bad_checkpoints_and_eval_requests(capsys, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    cases = [
        ([str(junk), "--task", "synthetic"], "junk.pt"),
        ([str(empty), "--task", "synthetic"], "empty.pt"),
        ([str(tmp_path / "missing.pt"), "--task", "synthetic"], "missing.pt"),
        ([str(junk), "--task", "esc50"], "--data"),
    ]
    for argv, named in cases:
        err = run(eval_cli.main, argv, capsys)
        assert named in err, (argv, err)


def test_bad_sweep_specs_are_named_before_ray_starts(capsys, tmp_path):
    specs = {
        "unknown_key.yaml": f"name: x\nbase: {TINY}\naxez: []\n",
        "bad_axis.yaml": f"name: x\nbase: {TINY}\naxes:\n  - name: a\n    key: optim.lrr\n    values: [1]\n",
        "list.yaml": "- 1\n",
        "dup.yaml": f"name: x\nname: y\nbase: {TINY}\n",
    }
    for name, text in specs.items():
        (tmp_path / name).write_text(text)
        err = run(sweep_cli.main, [str(tmp_path / name), "--dry-run"], capsys)
        assert name in err or "axez" in err or "optim.lrr" in err, (name, err)
    err = run(sweep_cli.main, [str(tmp_path / "none.yaml"), "--dry-run"], capsys)
    assert "none.yaml" in err


def test_tables_of_an_unknown_sweep_are_one_line(capsys, tmp_path):
    err = run(tables_cli.main, ["nothing_here", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], capsys)
    assert "nothing_here" in err


def test_bogus_tracking_uri_and_storage_file_are_refused_before_ray(capsys, tmp_path, monkeypatch):
    from ajepa.sweep import runner

    monkeypatch.setattr(runner, "run_sweep", lambda *a, **k: pytest.fail("the sweep was started"))
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: x\nbase: {TINY}\naxes: [{{name: loss, key: loss.kind, values: [l2]}}]\n"
                    f"storage: {tmp_path / 'store'}\ntracking: {{uri: 'bogus://x'}}\n")
    err = run(sweep_cli.main, [str(spec), "--quiet"], capsys)
    assert "bogus://x" in err and "tracking.uri" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "afile").write_text("")
    err = run(sweep_cli.main, [str(spec), "--storage", str(tmp_path / "afile"), "--tracking-uri", "http://h:5000"],
              capsys)
    assert "afile" in err and "--storage" in err and len(err.strip().splitlines()) == 1
