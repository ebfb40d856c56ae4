"""A small labelled set of REAL recorded sounds, in the ESC-50 on-disk layout.

    python benchmarks/real_devset.py [--out .cache/real_devset] [--install] [--list]

Writes ``OUT/audio/*.wav`` (mono, 16 kHz, 5.0 s, 16-bit) and ``OUT/meta/esc50.csv``
(``filename,fold,target,category,esc10,src_file,take``), so the project's ESC-50 loader
reads it unchanged: ``data.kind=esc50 data.root=OUT`` or the eval task
``{task: esc50, root: OUT}`` (5-fold cross-validation). ``OUT/meta/sources.csv`` names
the package file and time slice behind every clip, ``OUT/meta/manifest.json`` the
package versions and settings, and ``OUT/meta/licenses/`` holds each package's Debian
copyright file. Nothing is downloaded by this script except, with ``--install``,
the Debian packages below through ``apt-get``.

Sources
-------
Sound effects recorded for free games, as Debian packages them (all in Debian main;
``--install`` runs ``apt-get install -y --no-install-recommends`` on the missing ones,
~1.5 GB installed in all, dependencies are fonts only):

=====================  =========================================================
package                licence of its sounds (``/usr/share/doc/PKG/copyright``)
=====================  =========================================================
boswars-data           GPL-2+
bzflag-data            GPL-2+ / LGPL-2.1 (data files)
chromium-bsu-data      Clarified Artistic
extremetuxracer-data   GPL-2+ (some CC0)
fillets-ng-data        GPL-2+
freeciv-data           GPL-2+
freedroidrpg-data      GPL-2+ / GPL-3 (some CC0)
ktuberling-data        GPL-2+ (some CC-BY / CC0)
lincity-ng-data        GPL-2+
megaglest-data         CC-BY-SA-3.0
minetest-data          CC-BY-SA-3.0 (some CC0 / MIT)
powermanga-data        GPL-3+
scorched3d-data        GPL-2+ (some CC-BY-SA-3)
supertux-data          GPL-2+ / GPL-3+ (some CC-BY-SA, CC0)
tuxpaint-data          GPL-2+ (some public domain)
warmux-data            GPL-2+
=====================  =========================================================

The output is for local evaluation only and is never committed; redistributing it
means honouring those licences (the copyright files travel with it).

Classes (13) and the rules that assign them
-------------------------------------------
A file gets the class of the first rule (:data:`RULES`) that matches its installed path
(lower case, ``re.search``); files no rule matches are not used. Music, UI beeps,
lasers and other synthesised effects are left out on purpose.

- ``explosion``: explosion/boom files of bzflag, chromium-bsu, freeciv, lincity,
  minetest (tnt), powermanga, scorched3d (explosions/), supertux, warmux.
- ``footsteps``: minetest ``*_footstep`` (11 surfaces), freedroidrpg, freeciv, warmux,
  megaglest horse/catapult walking.
- ``water``: splashes, bubbles, flowing water and waves (minetest, megaglest, lincity,
  supertux, scorched3d, fillets-ng, freeciv, warmux).
- ``thunderstorm``: rain and thunder (scorched3d, supertux, megaglest tilesets).
- ``fire``: burning / crackling flames (minetest, lincity, supertux, warmux, scorched3d,
  megaglest).
- ``gunshot``: guns, machine guns, cannons, mortars (warmux, scorched3d, freeciv, boswars).
- ``vehicle``: engines, traffic, trains, aircraft (scorched3d, lincity, fillets-ng,
  warmux, megaglest airship).
- ``bird``: chirps, gulls, roosters, chickens, owls, hawks, eagles (scorched3d, megaglest).
- ``animal``: cows, bulls, sheep, pigs, dogs, wolves (scorched3d, megaglest, fillets-ng).
- ``speech``: spoken words and sentences: ktuberling (object names, ~30 languages, one
  recording group per language), freedroidrpg (voice samples, Tux's comments),
  megaglest human units' acknowledgements, boswars tutorial narration, tuxpaint.
- ``scream``: human screams, pain and death cries (scorched3d, warmux, megaglest human
  units, freedroidrpg).
- ``impact``: hits, thuds, knocks, digging, breaking wood/metal (minetest, fillets-ng,
  warmux, extremetuxracer, freeciv, megaglest, supertux, freedroidrpg).
- ``machinery``: industrial / mechanical noise (lincity industry, mines, mills,
  recycling; scorched3d factory; warmux air hammer; minetest carts).

ESC-10-style subset (``esc10=True`` rows, task option ``esc10: true``): the first ten
classes above.

Clips, recordings and folds
---------------------------
Each file is decoded with soundfile (ogg/flac/wav; undecodable files are skipped), mixed
to mono, resampled to 16 kHz (``scipy.signal.resample_poly``), stripped of digital
silence at both ends, then cut into consecutive 5 s segments (at most
``--max-segments``, a last partial segment kept if it holds >= 2.5 s) or, if shorter
than 5 s, zero-padded at the end. Clips below -55 dBFS RMS over their audio, or peaking
below -40 dBFS, or with under 0.15 s of audio, are dropped, and so are exact duplicates.

``src_file`` is the recording group: package + file name with its trailing take number
removed (``default_grass_footstep.1/.2/.3`` -> one group; ``explosion1..9`` -> one
group), across folders (one sound copied into several game folders stays one group);
ktuberling and the freedroidrpg voice folders group by folder (one speaker each).
``take`` is the clip's letter within its group. Every class keeps at most
``--max-per-group`` clips of one group and ``--max-per-class`` clips in all, taken
round-robin over its groups (seeded order), so no single recording dominates a class.
Folds 1-5 are assigned per group (a group never spans two folds), greedily per class,
largest group first, into the fold that has the fewest clips of that class.

Everything is sorted and seeded: the same packages (same versions) give byte-identical
output. Exit code 2 with one line when a package is missing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
CLIP_SECONDS = 5.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
MIN_TAIL_SECONDS = 2.5
MIN_AUDIO_SECONDS = 0.15
SILENCE_LEVEL = 1e-4  # |x| below this at the ends is trimmed (-80 dBFS)
MIN_RMS_DB = -55.0
MIN_PEAK_DB = -40.0
FOLDS = 5
SEED = 20240501
AUDIO_SUFFIXES = (".wav", ".ogg", ".oga", ".flac")
DEFAULT_OUT = Path(".cache/real_devset")
MANIFEST = "manifest.json"

CLASSES: tuple[str, ...] = (
    "explosion", "footsteps", "water", "thunderstorm", "fire", "gunshot", "vehicle", "bird", "animal", "speech",
    "scream", "impact", "machinery",
)
ESC10 = frozenset(CLASSES[:10])

# megaglest units that are people (their *_ack / *_select lines are speech, *_die cries are screams)
_MG_HUMANS = (r"(archer|swordman|spearman|worker|technician|guard|horseman|archmage|battlemage|initiate|summoner|"
              r"axe_thrower|princess|cudgel|stickfighter|valkyrie|warrior|shaman)")


@dataclass(frozen=True)
class Rule:
    category: str
    package: str
    pattern: str
    # "stem": package + file stem without its take number; "dir": package + folder; else that literal name
    group: str = "stem"


RULES: tuple[Rule, ...] = (
    # ------------------------------------------------------------------ explosion
    Rule("explosion", "bzflag-data", r"/bzflag/(boom|explosion)\.wav$"),
    Rule("explosion", "chromium-bsu-data", r"/(boom|explobig|explostd|explopop)\.wav$"),
    Rule("explosion", "freeciv-data", r"/(lrgexpl|smlexpl)\.ogg$"),
    Rule("explosion", "lincity-ng-data", r"/rocketexplosion\d*\.wav$"),
    Rule("explosion", "minetest-data", r"/tnt_explode\.ogg$"),
    Rule("explosion", "powermanga-data", r"/sound_(big|medium|small)_explosion_\d+\.wav$"),
    Rule("explosion", "scorched3d-data", r"/wav/explosions/(exp|large|medium|small|xlarge|tank|meteor)\.wav$"),
    Rule("explosion", "supertux-data", r"/sounds/explosion\.wav$"),
    Rule("explosion", "warmux-data", r"/weapons/(explosion\d+|dynamite_exp|cluzooka_hit)\.ogg$"),
    # ------------------------------------------------------------------ footsteps
    Rule("footsteps", "minetest-data", r"/default_[a-z]+_footstep(\.\d+)?\.ogg$"),
    Rule("footsteps", "freedroidrpg-data", r"/tux_footstep\.ogg$"),
    Rule("footsteps", "freeciv-data", r"/foot\d*\.ogg$"),
    Rule("footsteps", "warmux-data", r"/step\.ogg$"),
    Rule("footsteps", "megaglest-data", r"/(horseman|catapult)_walk\d*\.(wav|ogg)$"),
    # ------------------------------------------------------------------ water
    Rule("water", "minetest-data", r"/env_sounds_water(\.\d+)?\.ogg$"),
    Rule("water", "megaglest-data", r"/water_sounds/water\d+\.wav$"),
    Rule("water", "lincity-ng-data", r"/(water|parklandlake)\d+\.wav$"),
    Rule("water", "supertux-data", r"/sounds/(splash\.(wav|ogg)|waterfall\.wav)$"),
    Rule("water", "scorched3d-data", r"/(splash|oceanwaves)\.wav$"),
    Rule("water", "fillets-ng-data", r"/sp-bubles_\d+\.ogg$"),
    Rule("water", "freeciv-data", r"/(splash|inh2o)\.ogg$"),
    Rule("water", "warmux-data", r"/(sink|supertux_swimming)\.ogg$"),
    # ------------------------------------------------------------------ thunderstorm
    Rule("thunderstorm", "scorched3d-data", r"/(rain|thunder\d*|lightningbolt)\.wav$"),
    Rule("thunderstorm", "supertux-data", r"/sounds/(rain|thunder|lightning)\.wav$"),
    Rule("thunderstorm", "megaglest-data", r"/tilesets/[^/]+/sounds/rain\.(ogg|wav)$"),
    # ------------------------------------------------------------------ fire
    Rule("fire", "minetest-data", r"/(fire_(fire(\.\d+)?|large|small)|default_furnace_active)\.ogg$"),
    Rule("fire", "lincity-ng-data", r"/fire(wasteland)?\d+\.wav$"),
    Rule("fire", "supertux-data", r"/sounds/(fire\.ogg|flame\.wav)$"),
    Rule("fire", "warmux-data", r"/weapons/(flame|embers\d+)\.ogg$"),
    Rule("fire", "scorched3d-data", r"/explosions/napalm\.wav$"),
    Rule("fire", "megaglest-data", r"/wicker_fire\d*\.(wav|ogg)$"),
    # ------------------------------------------------------------------ gunshot
    Rule("gunshot", "warmux-data", r"/weapons/(gun|shotgun|m16)\.ogg$"),
    Rule("gunshot", "scorched3d-data", r"/(machinegun|shotgun|tripleshot|shoot/(large|medium|small|xlarge))\.wav$"),
    Rule("gunshot", "freeciv-data", r"/(mgbar\d+|mgheavy|lrgcan|medcan|mortar)\.ogg$"),
    Rule("gunshot", "boswars-data", r"/(assault|bazoo|grenadier|gturret)_attack\.wav$"),
    # ------------------------------------------------------------------ vehicle
    Rule("vehicle", "scorched3d-data",
         r"/(cessna|helicopter|apache_\d+|f16_\d+|f18_\d+|jet|t38|tankmove)\.wav$"),
    Rule("vehicle", "lincity-ng-data", r"/(trafichigh|traficlow|railtrain|dirttrack)\d+\.wav$"),
    Rule("vehicle", "fillets-ng-data", r"/mot-x-motor\.ogg$"),
    Rule("vehicle", "warmux-data", r"/weapons/aircraft_flying\.ogg$"),
    Rule("vehicle", "megaglest-data", r"/airship_fly\d*\.(wav|ogg)$"),
    # ------------------------------------------------------------------ bird
    Rule("bird", "scorched3d-data", r"/(birdchirp\d+|birds\d+|gull\d+|rooster)\.wav$"),
    Rule("bird", "megaglest-data", r"/(chicken|chicken_(ack|die|select|standing)\d*|rooster|owl|hawk|"
                                   r"eagle_(ack|select|die)\d*)\.(wav|ogg)$"),
    # ------------------------------------------------------------------ animal
    Rule("animal", "scorched3d-data", r"/(cows|moo|sheep|dog\d*|wolf)\.wav$"),
    Rule("animal", "megaglest-data", r"/(wolf|sheep|sheep_die\d*|(cow|pig|bull)_(ack|die|select)\d*|"
                                     r"mudchute_cow_\d+)\.(wav|ogg)$"),
    Rule("animal", "fillets-ng-data", r"/dr-x-pes\.ogg$"),
    # ------------------------------------------------------------------ speech
    Rule("speech", "ktuberling-data", r"/ktuberling/sounds/[^/]+/[^/]+\.ogg$", group="dir"),
    Rule("speech", "freedroidrpg-data", r"/(voice_samples|tux_ingame_comments)/[^/]+\.ogg$", group="dir"),
    Rule("speech", "megaglest-data", r"/units/[^/]+/sounds/" + _MG_HUMANS + r"_(ack|select)\d*\.(wav|ogg)$"),
    Rule("speech", "boswars-data", r"/tutorial/level\d+(-\d+)?\.wav$", group="dir"),
    Rule("speech", "boswars-data", r"/units/[^/]+/[a-z.]+\.(ready|underattack|completed)\.wav$", group="announcer"),
    Rule("speech", "tuxpaint-data", r"/sounds/(areyousure|youcannot)\.wav$"),
    # ------------------------------------------------------------------ scream
    Rule("scream", "scorched3d-data", r"/(scream\d*|screaming)\.wav$"),
    Rule("scream", "warmux-data", r"/voices/.*/(death\d*|injured_(high|medium|light)\d*|suicide)\.ogg$"),
    Rule("scream", "megaglest-data", r"/units/[^/]+/sounds/" + _MG_HUMANS + r"_die\d*\.(wav|ogg)$"),
    Rule("scream", "freedroidrpg-data", r"/influencer_scream_sound_\d+\.ogg$"),
    # ------------------------------------------------------------------ impact
    Rule("impact", "minetest-data", r"/default_(dig_[a-z_]+|dug_[a-z]+|place_node(_hard|_metal)?|gravel_dig|"
                                    r"gravel_dug|ice_dig|ice_dug|tool_breaks)(\.\d+)?\.ogg$"),
    Rule("impact", "fillets-ng-data", r"/sp-impact_(heavy|light)_\d+\.ogg$"),
    Rule("impact", "warmux-data", r"/(box_hitting_ground|anvil_collision|slap)\.ogg$"),
    Rule("impact", "extremetuxracer-data", r"/tree_hit\.wav$"),
    Rule("impact", "freeciv-data", r"/(wall01|woodbrk|metbrk)\.ogg$"),
    Rule("impact", "megaglest-data", r"/(anvil\d+|arrow_hit\d+)\.wav$"),
    Rule("impact", "supertux-data", r"/sounds/(thud\.ogg|brick\.wav|wood\.wav|stomp\.wav)$"),
    Rule("impact", "freedroidrpg-data", r"/(swing_then_hit_\d+|drop_sword_sound|drop_book_sound)\.ogg$"),
    # ------------------------------------------------------------------ machinery
    Rule("machinery", "lincity-ng-data",
         r"/(industryhigh|industrylight|coalmine|oremine|mill|recycle)\d+\.wav$"),
    Rule("machinery", "scorched3d-data", r"/factoryloop\d*\.wav$"),
    Rule("machinery", "warmux-data", r"/airhammer_used\.ogg$"),
    Rule("machinery", "minetest-data", r"/carts_cart_moving(\.\d+)?\.ogg$"),
)
PACKAGES: tuple[str, ...] = tuple(sorted({rule.package for rule in RULES}))


class MissingPackages(RuntimeError):
    pass


# --------------------------------------------------------------------------- packages


def package_version(package: str) -> str | None:
    """The installed version, or None when the package is not installed."""
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    if done.returncode != 0 or not done.stdout.startswith("install ok installed"):
        return None
    return done.stdout.split("\t", 1)[1].strip()


def install_command(packages) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install_command(packages), env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install_command(packages), env=env, check=True)


def package_files(package: str) -> list[str]:
    """Installed regular audio files of a package, sorted, symlinks resolved and deduplicated."""
    listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    seen: dict[str, str] = {}
    for line in sorted(listing.splitlines()):
        if line.lower().endswith(AUDIO_SUFFIXES) and os.path.isfile(line):
            seen.setdefault(os.path.realpath(line), line)
    return sorted(seen.values())


# --------------------------------------------------------------------------- rules


def classify(package: str, path: str) -> Rule | None:
    low = path.lower()
    for rule in RULES:
        if rule.package == package and re.search(rule.pattern, low):
            return rule
    return None


_TAKE = re.compile(r"([._ -]*\d+)+$")


def group_key(rule: Rule, path: str) -> str:
    """Recording group of a file: package + stem without its take number (or + folder)."""
    p = Path(path.lower())
    if rule.group == "dir":
        return f"{rule.package}:{rule.category}:{p.parent.name}"
    if rule.group != "stem":
        return f"{rule.package}:{rule.category}:{rule.group}"
    stem = _TAKE.sub("", p.stem)
    if len(stem) < 3:  # f16_1 -> f16, m16 -> m16: a number that names the thing, not the take
        stem = re.sub(r"[._ -]+\d+$", "", p.stem)
    return f"{rule.package}:{rule.category}:{stem}"


def slug(key: str) -> str:
    package, _, rest = key.partition(":")
    rest = rest.partition(":")[2]
    package = package.removesuffix("-data")
    return re.sub(r"[^a-z0-9]+", "_", f"{package}_{rest}").strip("_")


# --------------------------------------------------------------------------- audio


def decode(path: str) -> np.ndarray | None:
    """Mono float64 at 16 kHz, or None when soundfile cannot decode the file."""
    import soundfile
    from scipy.signal import resample_poly

    try:
        data, rate = soundfile.read(path, dtype="float64", always_2d=True)
    except Exception:  # noqa: BLE001 - any decoder failure means: skip this file
        return None
    if data.size == 0:
        return None
    wave = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(int(rate), SAMPLE_RATE)
        wave = resample_poly(wave, SAMPLE_RATE // g, int(rate) // g)
    return np.clip(wave, -1.0, 1.0)


def trim(wave: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wave) >= SILENCE_LEVEL)
    if loud.size == 0:
        return wave[:0]
    return wave[loud[0]:loud[-1] + 1]


def segments(wave: np.ndarray, max_segments: int) -> list[tuple[int, np.ndarray]]:
    """(start sample, audio) pieces of at most 5 s: consecutive, the last partial one only if >= 2.5 s."""
    if len(wave) <= CLIP_SAMPLES:
        return [(0, wave)]
    out = []
    for start in range(0, len(wave), CLIP_SAMPLES):
        piece = wave[start:start + CLIP_SAMPLES]
        if len(out) >= max_segments or (len(piece) < CLIP_SAMPLES and len(piece) < MIN_TAIL_SECONDS * SAMPLE_RATE):
            break
        out.append((start, piece))
    return out


def audible(piece: np.ndarray) -> bool:
    if len(piece) < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        return False
    rms = float(np.sqrt(np.mean(piece * piece)))
    peak = float(np.max(np.abs(piece)))
    return rms >= 10 ** (MIN_RMS_DB / 20) and peak >= 10 ** (MIN_PEAK_DB / 20)


def to_clip(piece: np.ndarray) -> np.ndarray:
    clip = np.zeros(CLIP_SAMPLES, dtype=np.int16)
    clip[:len(piece)] = np.round(np.clip(piece, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    return clip


def wav_bytes(clip: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, clip, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


# --------------------------------------------------------------------------- selection


@dataclass
class Clip:
    category: str
    group: str
    package: str
    source: str
    start: float
    seconds: float
    audio: np.ndarray  # int16 [CLIP_SAMPLES]
    fold: int = 0
    take: str = ""


def _order(key: str) -> str:
    return hashlib.sha1(f"{SEED}:{key}".encode()).hexdigest()


def collect(max_segments: int, log=print) -> tuple[list[Clip], dict[str, int]]:
    clips: list[Clip] = []
    seen: set[bytes] = set()
    per_package: dict[str, int] = {}
    for package in PACKAGES:
        used = 0
        for path in package_files(package):
            rule = classify(package, path)
            if rule is None:
                continue
            wave = decode(path)
            if wave is None:
                log(f"  skipped (cannot decode): {path}")
                continue
            wave = trim(wave)
            group = group_key(rule, path)
            for start, piece in segments(wave, max_segments):
                if not audible(piece):
                    continue
                clip = to_clip(piece)
                digest = hashlib.sha1(clip.tobytes()).digest()
                if digest in seen:
                    continue
                seen.add(digest)
                clips.append(Clip(rule.category, group, package, path, start / SAMPLE_RATE,
                                  len(piece) / SAMPLE_RATE, clip))
                used += 1
        per_package[package] = used
    return clips, per_package


def select(clips: list[Clip], max_per_group: int, max_per_class: int) -> list[Clip]:
    """Per class: at most max_per_group clips of a group, max_per_class in all, round-robin over groups."""
    chosen: list[Clip] = []
    for category in CLASSES:
        groups: dict[str, list[Clip]] = {}
        for clip in clips:
            if clip.category == category:
                groups.setdefault(clip.group, []).append(clip)
        queues = []
        for key in sorted(groups, key=_order):
            members = sorted(groups[key], key=lambda c: _order(f"{c.source}@{c.start}"))[:max_per_group]
            queues.append(members)
        taken: list[Clip] = []
        depth = 0
        while len(taken) < max_per_class and any(depth < len(q) for q in queues):
            for queue in queues:
                if depth < len(queue) and len(taken) < max_per_class:
                    taken.append(queue[depth])
            depth += 1
        chosen.extend(taken)
    return chosen


def assign_folds(clips: list[Clip]) -> None:
    """Folds per recording group, balanced per class; takes lettered per group in source order."""
    totals = [0] * FOLDS
    for category in CLASSES:
        groups: dict[str, list[Clip]] = {}
        for clip in clips:
            if clip.category == category:
                groups.setdefault(clip.group, []).append(clip)
        counts = [0] * FOLDS
        for key in sorted(groups, key=lambda k: (-len(groups[k]), _order(k))):
            fold = min(range(FOLDS), key=lambda f: (counts[f], totals[f], f))
            counts[fold] += len(groups[key])
            totals[fold] += len(groups[key])
            for i, clip in enumerate(sorted(groups[key], key=lambda c: (c.source, c.start))):
                clip.fold = fold + 1
                clip.take = _take_letter(i)


def _take_letter(i: int) -> str:
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(65 + r) + letters
    return letters


# --------------------------------------------------------------------------- output


def clear_output(out: Path) -> None:
    """Remove a previous build at ``out``; refuse to touch a non-empty folder that is not one."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"real_devset: --out {out} exists and is not a folder")
    if any(out.iterdir()) and not (out / "meta" / MANIFEST).is_file():
        raise SystemExit(f"real_devset: --out {out} is not empty and holds no meta/{MANIFEST}: refusing to overwrite")
    for name in ("audio", "meta", "stats.json"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def write(out: Path, clips: list[Clip], versions: dict[str, str], settings: dict) -> list[dict]:
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "meta" / "licenses").mkdir(parents=True, exist_ok=True)
    rows, sources = [], []
    names: dict[str, str] = {}
    for clip in clips:
        src = slug(clip.group)
        if names.setdefault(src, clip.group) != clip.group:
            src = f"{src}_{_order(clip.group)[:6]}"
        target = CLASSES.index(clip.category)
        filename = f"{clip.fold}-{src}-{clip.take}-{target}.wav"
        rows.append({"filename": filename, "fold": clip.fold, "target": target, "category": clip.category,
                     "esc10": str(clip.category in ESC10), "src_file": src, "take": clip.take})
        sources.append({"filename": filename, "category": clip.category, "package": clip.package,
                        "version": versions[clip.package], "source": clip.source, "start_s": f"{clip.start:.3f}",
                        "audio_s": f"{clip.seconds:.3f}"})
        (out / "audio" / filename).write_bytes(wav_bytes(clip.audio))
    rows.sort(key=lambda r: r["filename"])
    sources.sort(key=lambda r: r["filename"])
    _write_csv(out / "meta" / "esc50.csv", rows, ["filename", "fold", "target", "category", "esc10", "src_file", "take"])
    _write_csv(out / "meta" / "sources.csv", sources, list(sources[0]))
    for package in sorted(versions):
        copyright_file = Path("/usr/share/doc") / package / "copyright"
        if copyright_file.is_file():
            shutil.copyfile(copyright_file, out / "meta" / "licenses" / f"{package}.copyright")
    manifest = {"packages": versions, "settings": settings, "classes": list(CLASSES),
                "counts": {c: sum(r["category"] == c for r in rows) for c in CLASSES},
                "groups": {c: len({r["src_file"] for r in rows if r["category"] == c}) for c in CLASSES},
                "clips": len(rows)}
    (out / "meta" / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return rows


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def print_summary(rows: list[dict], versions: dict[str, str], per_package: dict[str, int], out: Path) -> None:
    print(f"{'class':<14}{'clips':>6}{'groups':>8}{'packages':>10}   per fold")
    for category in CLASSES:
        mine = [r for r in rows if r["category"] == category]
        groups = {r["src_file"] for r in mine}
        packages = {r["src_file"].split("_", 1)[0] for r in mine}
        folds = [sum(r["fold"] == f for r in mine) for f in range(1, FOLDS + 1)]
        print(f"{category:<14}{len(mine):>6}{len(groups):>8}{len(packages):>10}   {folds}")
    print(f"{'total':<14}{len(rows):>6}{len({r['src_file'] for r in rows}):>8}")
    print("packages used (installed version, clips found before selection):")
    for package in sorted(versions):
        print(f"  {package} {versions[package]} ({per_package.get(package, 0)})")
    print(f"wrote {out}/audio/*.wav and {out}/meta/esc50.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="real_devset", description="Build a small ESC-50-layout set of real recorded sounds from Debian packages.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--install", action="store_true", help="apt-get install the missing packages first")
    parser.add_argument("--list", action="store_true", help="only print which files each rule matched")
    parser.add_argument("--max-segments", type=int, default=4, help="5 s segments cut from one file (default 4)")
    parser.add_argument("--max-per-group", type=int, default=8, help="clips of one recording group (default 8)")
    parser.add_argument("--max-per-class", type=int, default=60, help="clips per class (default 60)")
    args = parser.parse_args(argv)

    missing = [p for p in PACKAGES if package_version(p) is None]
    if missing and args.install:
        install(missing)
        missing = [p for p in PACKAGES if package_version(p) is None]
    if missing:
        print(f"real_devset: missing Debian packages {' '.join(missing)}: run `{' '.join(install_command(missing))}` "
              f"as root, or pass --install", file=sys.stderr)
        return 2
    versions = {p: package_version(p) for p in PACKAGES}

    if args.list:
        for package in PACKAGES:
            for path in package_files(package):
                rule = classify(package, path)
                if rule is not None:
                    print(f"{rule.category:<13} {group_key(rule, path):<48} {path}")
        return 0

    clear_output(args.out)
    clips, per_package = collect(args.max_segments)
    chosen = select(clips, args.max_per_group, args.max_per_class)
    assign_folds(chosen)
    settings = {"sample_rate": SAMPLE_RATE, "clip_seconds": CLIP_SECONDS, "max_segments": args.max_segments,
                "max_per_group": args.max_per_group, "max_per_class": args.max_per_class, "seed": SEED,
                "folds": FOLDS}
    rows = write(args.out, chosen, versions, settings)
    print_summary(rows, versions, per_package, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
