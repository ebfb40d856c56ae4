"""benchmarks/real_pretrain_set.py on generated package files (no Debian packages needed)."""

from __future__ import annotations

import importlib
import json
import sys
import zipfile
from pathlib import Path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
pretrain_set = importlib.import_module("real_pretrain_set")


def _fake_packages(tmp_path, monkeypatch):
    archive = tmp_path / "game.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("audio/attack/hit.ogg", b"OggS-hit")
        bundle.writestr("audio/music/theme.ogg", b"OggS-music")
        bundle.writestr("art/tree.png", b"png")
    loose = tmp_path / "usr" / "share" / "other"
    loose.mkdir(parents=True)
    (loose / "bird.wav").write_bytes(b"RIFF-bird")
    monkeypatch.setattr(pretrain_set, "SOURCES", {"game-data": ("game", (str(archive),)),
                                                  "other-data": ("other", None)})
    monkeypatch.setattr(pretrain_set.real_devset, "package_files", lambda package: [str(loose / "bird.wav")])
    monkeypatch.setattr(pretrain_set.real_devset, "package_version", lambda package: "1.0")


def test_builds_one_folder_per_game_with_its_sound_effects_only(tmp_path, monkeypatch):
    _fake_packages(tmp_path, monkeypatch)
    out = tmp_path / "set"
    assert pretrain_set.main(["--out", str(out)]) == 0
    assert [p.name for p in (out / "game").iterdir()] == ["audio__attack__hit.ogg"]  # no music, no images
    assert (out / "game" / "audio__attack__hit.ogg").read_bytes() == b"OggS-hit"  # byte for byte
    assert len(list((out / "other").iterdir())) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == {"game": 1, "other": 1} and manifest["packages"] == {"game-data": "1.0",
                                                                                     "other-data": "1.0"}
    (out / "stats.json").write_text("{}")  # a rebuild replaces its own output, stats included
    assert pretrain_set.main(["--out", str(out)]) == 0 and not (out / "stats.json").exists()


def test_a_missing_package_or_a_foreign_folder_is_refused_with_exit_code_2(tmp_path, monkeypatch, capsys):
    _fake_packages(tmp_path, monkeypatch)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert pretrain_set.main(["--out", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    monkeypatch.setattr(pretrain_set.real_devset, "package_version", lambda package: None)
    assert pretrain_set.main(["--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "apt-get install -y --no-install-recommends game-data other-data" in err
    assert not (tmp_path / "new").exists()


def test_an_unreadable_archive_is_one_line_exit_2_and_leaves_nothing_half_built(tmp_path, monkeypatch, capsys):
    _fake_packages(tmp_path, monkeypatch)
    (tmp_path / "game.zip").write_bytes(b"not a zip")
    out = tmp_path / "set"
    assert pretrain_set.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot read {tmp_path / 'game.zip'}" in err[0] and not out.exists()
