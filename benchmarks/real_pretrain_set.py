"""An unlabelled pretraining set of REAL recorded sounds, for `data.kind=folder`.

    python benchmarks/real_pretrain_set.py --install      # apt-get the packages, build .cache/real_pretrain
    ajepa-stats experiments/tiny.yaml data.kind=folder data.root=.cache/real_pretrain
    python benchmarks/real_audio.py --config experiments/tiny.yaml data.kind=folder \
        data.root=.cache/real_pretrain 'eval.tasks=[]' out_dir=runs/real_pretrain

Why: the question "does the tiny recipe learn more transferable features from real sound
than from the built-in synthetic set?" needs real sound that is neither in the real-sound
dev set (benchmarks/real_devset.py: other packages) nor in the packages the issue keeps for
the independent check. These are the sound effects (no music) of seven free games in Debian
main, about 1,960 files and 1.8 hours (0 A.D.: combat, fauna, gathering, unit voices in
several languages; Warzone 2100; Trigger Rally: engines, skids; Widelands: animals, crafts;
SuperTuxKart; Frozen Bubble; Pingus), copied byte for byte from the packages and their
zip archives into ``OUT/<game>/<member path with / as __>``, one folder per game (the
folder layout's "class", unused by pretraining). Nothing is decoded or resampled here:
the loader does that, and its feature cache keeps the log-mels. ``OUT/manifest.json``
records the package versions and file counts; the same versions give the same files.
Never committed (``.cache/``). Licences: each package's /usr/share/doc/<package>/copyright.

Exit codes: 0 built; 2 a package is missing or apt-get failed (the message gives the
apt-get line), ``--out`` is a non-empty folder this script did not make, or a package's
archive cannot be read (nothing half-built is left behind).
"""

from __future__ import annotations

import argparse
import errno
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_devset beside this file

import real_devset  # noqa: E402  (package queries and installs shared with the dev set)

DEFAULT_OUT = Path(".cache/real_pretrain")
MANIFEST = "manifest.json"
AUDIO_SUFFIXES = (".wav", ".ogg")
# package -> (folder name, zip archives inside it whose audio members are taken; None: loose files)
SOURCES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "0ad-data": ("0ad", ("/usr/share/games/0ad/mods/public/public.zip",)),
    "warzone2100-data": ("warzone2100", ("/usr/share/games/warzone2100/base.wz",)),
    "trigger-rally-data": ("trigger-rally", ("/usr/share/games/trigger-rally/data.zip",)),
    "widelands-data": ("widelands", None),
    "supertuxkart-data": ("supertuxkart", None),
    "frozen-bubble-data": ("frozen-bubble", None),
    "pingus-data": ("pingus", None),
}


def wanted(path: str) -> bool:
    """Sound effects only: audio files outside any music folder."""
    return path.lower().endswith(AUDIO_SUFFIXES) and "music" not in path.lower()


def package_sounds(package: str, archives: tuple[str, ...] | None):
    """``(member path, bytes)`` of the package's sound effects, in a fixed order."""
    if archives is None:
        for path in sorted(real_devset.package_files(package)):
            if wanted(path) and Path(path).is_file():
                yield path.strip("/"), Path(path).read_bytes()
        return
    for archive in archives:
        try:
            bundle = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as err:
            raise OSError(errno.EINVAL, "not a zip archive", archive) from err
        with bundle:
            for member in sorted(bundle.namelist()):
                if wanted(member):
                    yield member, bundle.read(member)


def clear_output(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file()):
        raise SystemExit(f"real_pretrain_set: --out {out} is not empty and holds no {MANIFEST}: refusing to overwrite "
                         "(choose another --out, or delete the folder if it is a build that stopped half-way)")
    for child in out.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def build(out: Path, versions: dict[str, str]) -> dict[str, int]:
    counts = {}
    for package, (folder, archives) in SOURCES.items():
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        counts[folder] = 0
        for member, data in package_sounds(package, archives):
            (target / member.replace("/", "__")).write_bytes(data)
            counts[folder] += 1
    manifest = {"packages": versions, "files": counts, "script": "benchmarks/real_pretrain_set.py"}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="real_pretrain_set", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--install", action="store_true", help="apt-get install the missing packages first (root)")
    args = parser.parse_args(argv)
    missing = [p for p in SOURCES if real_devset.package_version(p) is None]
    if missing and args.install:
        try:
            real_devset.install(missing)
        except (OSError, subprocess.CalledProcessError) as err:
            print(f"real_pretrain_set: apt-get failed ({err}); install as root: "
                  f"{' '.join(real_devset.install_command(missing))}", file=sys.stderr)
            return 2
        missing = [p for p in SOURCES if real_devset.package_version(p) is None]
    if missing:
        print(f"real_pretrain_set: missing packages; install them with: {' '.join(real_devset.install_command(missing))}"
              " (or run with --install as root)", file=sys.stderr)
        return 2
    try:
        clear_output(args.out)
    except SystemExit as refusal:
        print(refusal, file=sys.stderr)
        return 2
    try:
        counts = build(args.out, {p: real_devset.package_version(p) for p in SOURCES})
    except OSError as err:  # an archive moved or damaged in another package version
        shutil.rmtree(args.out, ignore_errors=True)  # nothing half-built is left to refuse the next run
        where = getattr(err, "filename", None) or err
        print(f"real_pretrain_set: cannot read {where}; reinstall its package (apt-get install --reinstall) or "
              "update SOURCES in benchmarks/real_pretrain_set.py", file=sys.stderr)
        return 2
    print(f"{sum(counts.values())} sound files -> {args.out} ("
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")
    print(f"next: ajepa-stats experiments/tiny.yaml data.kind=folder data.root={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
