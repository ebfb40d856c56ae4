"""Clip-level paired tests: power from the test clips, not only from the seeds.

Every trial logs its probe's per-clip test outcome as an MLflow artifact
``predictions/<task>.csv`` (columns ``step, fold, clip, label, prediction, correct``; see
``ajepa.eval.run``). Two rows of a table that share seeds and the test set can then be
compared clip by clip, which a seed-level test with 2-3 seeds cannot do.

Two procedures, both on the difference of accuracies ``A - B``, for one task:

* :func:`sign_flip_test` -- the p-value in the tables' ``p (clips)`` column. The unit is
  the **test clip**, conditional on the encoders actually trained (the seeds run): under
  H0, on every clip the outcomes of A and B over all shared seeds are exchangeable, so
  swapping A and B on a clip (in every seed at once) leaves the distribution unchanged.
  The statistic ``T = sum over clips and seeds of (correct_A - correct_B)`` is referred
  to its exact sign-flip distribution: ``T* = sum_i ±m_i`` with ``m_i`` clip i's summed
  difference over seeds. With one seed this is exactly the two-sided exact McNemar test.
  Keeping a clip one unit across seeds matters: the seeds are scored on the *same* clips,
  so a clip that one row gets right in every seed is one piece of evidence, not S
  independent ones (per-seed McNemar p-values combined with Fisher or Stouffer would
  assume that independence and reject too often).
* :func:`two_way_bootstrap` -- the ``95% CI (seeds × clips)`` interval: seeds and clips are
  resampled independently (a crossed, "pigeonhole" bootstrap: the same clip resample
  applies to every resampled seed, as the clips are the same in every seed), so the
  interval carries seed-to-seed variation as well as clip sampling. With 2-3 seeds its
  seed part rests on very few values: read it as a guide, not a test.

What the clip test does **not** say: that the difference would hold for other
pretraining seeds. It generalises over test clips for these trained encoders; the seed-level
test (``analysis.stats``) is the one that treats seeds as the unit.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ajepa.contracts import PREDICTIONS  # artifact folder of a trial run: <task>.csv per task
from analysis.runs import FINISHED, Axis, open_client
from analysis.tables import ROW, axes_of, latest_attempts

COLUMNS = ["run_id", ROW, "seed", "task", "fold", "clip", "correct"]
EXACT_LIMIT = 200_000                # above this sum of |m_i| the normal approximation is used


# --------------------------------------------------------------------------- loading


def load_predictions(runs: pd.DataFrame, tasks: list[str] | None = None, uri: str | None = None,
                     axes: list[Axis] | None = None) -> pd.DataFrame:
    """Per-clip test outcomes of the finished trials in ``runs`` (one attempt per row and seed).

    Returns a long frame with :data:`COLUMNS` (``correct`` 0/1; multi-label tasks, which
    have no per-clip correctness, are left out). Runs without the artifact (logged before
    it existed) contribute nothing. One artifact listing and download per run.
    """
    axes = axes_of(runs, axes)
    trials = latest_attempts(runs, axes)
    if trials.empty:
        return pd.DataFrame(columns=COLUMNS)
    done = trials[(trials["status"] == FINISHED) & trials["seed"].notna()]
    if done.empty:
        return pd.DataFrame(columns=COLUMNS)
    client = None
    parts = []
    with tempfile.TemporaryDirectory(prefix="ajepa-predictions-") as tmp:
        for trial in done.to_dict("records"):
            folder = _local_artifacts(trial.get("artifact_uri"))
            if folder is not None:  # a local store: read the files where they are
                files = sorted((folder / PREDICTIONS).glob("*.csv"))
            else:
                client = client or open_client(uri or runs.attrs["uri"])
                files = _download(client, trial["run_id"], Path(tmp) / trial["run_id"])
            for path in files:
                task = path.stem
                if tasks is not None and task not in tasks:
                    continue
                frame = read_predictions(path)
                if frame.empty:
                    continue
                parts.append(frame.assign(run_id=trial["run_id"], **{ROW: trial[ROW]}, seed=int(trial["seed"]),
                                          task=task))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def _local_artifacts(artifact_uri) -> Path | None:
    """The folder behind a run's artifact URI when it is on this file system, else None."""
    if not isinstance(artifact_uri, str) or not artifact_uri:
        return None
    if artifact_uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(artifact_uri).path))
    if "://" not in artifact_uri and ":" not in artifact_uri.split("/")[0]:
        return Path(artifact_uri)
    return None


def _download(client, run_id: str, dst: Path) -> list[Path]:
    """The run's predictions/*.csv from a remote artifact store (no progress bars)."""
    import os

    try:
        infos = [f for f in client.list_artifacts(run_id, PREDICTIONS) if not f.is_dir and f.path.endswith(".csv")]
    except Exception:  # an unreachable artifact store must not cost the whole table
        return []
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        return [Path(client.download_artifacts(run_id, info.path, str(dst))) for info in infos]
    except Exception:
        return []
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous


def read_predictions(path) -> pd.DataFrame:
    """One ``predictions/<task>.csv``: ``fold, clip, correct`` of its single-label clips."""
    frame = pd.read_csv(path, dtype={"fold": str, "clip": str, "label": str, "prediction": str})
    if "correct" not in frame or frame.empty:
        return pd.DataFrame(columns=["fold", "clip", "correct"])
    frame = frame[pd.to_numeric(frame["correct"], errors="coerce").notna()]
    return pd.DataFrame({"fold": frame["fold"].astype(str), "clip": frame["clip"].astype(str),
                         "correct": frame["correct"].astype(float).astype(int)})


def task_of(metric: str) -> str | None:
    """``eval/<task>/acc`` -> task; None for any other metric (the clip test needs accuracy)."""
    parts = metric.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == "eval" and parts[2] == "acc" else None


def clip_pairs(predictions: pd.DataFrame, task: str, row: str, reference: str) -> pd.DataFrame:
    """Outcomes of ``row`` (a) and ``reference`` (b) on the clips both scored in the same seed.

    Columns ``seed, fold, clip, a, b``.
    """
    mine = predictions[predictions["task"] == task]
    a = mine[mine[ROW] == row][["seed", "fold", "clip", "correct"]].rename(columns={"correct": "a"})
    b = mine[mine[ROW] == reference][["seed", "fold", "clip", "correct"]].rename(columns={"correct": "b"})
    a = a.drop_duplicates(["seed", "fold", "clip"], keep="last")
    b = b.drop_duplicates(["seed", "fold", "clip"], keep="last")
    return a.merge(b, on=["seed", "fold", "clip"], how="inner")


# --------------------------------------------------------------------------- the tests


def clip_sums(pairs: pd.DataFrame) -> np.ndarray:
    """``m_i``: each clip's summed difference ``sum_seeds (a - b)``, a clip = (fold, clip id)."""
    if pairs.empty:
        return np.zeros(0, dtype=np.int64)
    d = pairs["a"].to_numpy(dtype=np.int64) - pairs["b"].to_numpy(dtype=np.int64)
    return np.bincount(_clip_codes(pairs), weights=d).astype(np.int64)


def _clip_codes(pairs: pd.DataFrame) -> np.ndarray:
    """0..n_clips-1 per line: which clip, a clip being (fold, clip id)."""
    folds, _ = pd.factorize(pairs["fold"].astype(str))
    clips, names = pd.factorize(pairs["clip"].astype(str))
    return pd.factorize(folds.astype(np.int64) * max(len(names), 1) + clips)[0]


def sign_flip_pvalue(m: np.ndarray) -> float:
    """Two-sided exact p of ``T = sum m_i`` under independent fair sign flips of each ``m_i``.

    ``P(|T*| >= |T|)`` with ``T* = sum ±|m_i|``; the distribution is the convolution, over
    each distinct ``|m| = k``, of ``k * (2 Binomial(c_k, 1/2) - c_k)``. Exact up to
    :data:`EXACT_LIMIT` (sum of ``|m_i|``), the normal approximation ``T / sqrt(sum m_i^2)``
    beyond. All ``m_i = 0`` (no clip where the rows differ): p = 1.
    """
    m = np.asarray(m, dtype=np.int64)
    observed = abs(int(m.sum()))
    sizes = np.abs(m[m != 0])
    if sizes.size == 0:
        return 1.0
    total = int(sizes.sum())
    if total > EXACT_LIMIT:
        z = observed / math.sqrt(float((sizes.astype(np.float64) ** 2).sum()))
        return float(min(1.0, 2 * stats.norm.sf(z)))
    # distribution of sum_i ±|m_i| on the integers -total..total, as probabilities
    dist = np.zeros(1)
    dist[0] = 1.0
    offset = 0  # dist[j] = P(T* = j - offset)
    for k, count in zip(*np.unique(sizes, return_counts=True)):
        k, count = int(k), int(count)
        heads = stats.binom.pmf(np.arange(count + 1), count, 0.5)   # values k * (2h - count)
        part = np.zeros(2 * k * count + 1)
        part[::2 * k] = heads
        dist = np.convolve(dist, part)
        offset += k * count
    values = np.arange(dist.size) - offset
    p = float(dist[np.abs(values) >= observed].sum())
    return float(min(1.0, max(p, 0.0)))


def detectable_difference(m: np.ndarray, n_scored: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest accuracy difference (a fraction) the sign-flip test detects with
    probability ``power`` at two-sided level ``alpha`` (not Holm-adjusted), given these rows'
    per-clip disagreement: ``(z_{1-alpha/2} + z_power) * sqrt(sum m_i^2) / n_scored``.

    Normal approximation of the test: ``T`` has null variance ``sum m_i^2`` (sign flips),
    kept as the variance under the alternative. It says how large a difference this test
    set and these seeds can resolve, which a p-value alone does not: "n.s." with a
    detectable difference of 10 points means "cannot tell", not "no effect". No disagreeing
    clip: nan (the rows cannot be told apart by these clips at all).
    """
    m = np.asarray(m, dtype=np.float64)
    spread = float(np.sqrt((m ** 2).sum()))
    if n_scored <= 0 or spread == 0:
        return np.nan
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * spread / n_scored)


def sign_flip_test(pairs: pd.DataFrame) -> dict:
    """The clip-level test of ``a - b`` (see the module docstring).

    Returns ``n_seeds``, ``n_clips`` (distinct clips), ``n_scored`` (clip x seed pairs),
    ``diff`` (pooled accuracy difference over all scored pairs, a fraction), ``p`` and
    ``mde`` (:func:`detectable_difference`, a fraction).
    """
    m = clip_sums(pairs)
    n = len(pairs)
    return {"n_seeds": int(pairs["seed"].nunique()) if n else 0, "n_clips": int(m.size), "n_scored": n,
            "diff": float(m.sum() / n) if n else np.nan, "p": sign_flip_pvalue(m) if n else np.nan,
            "mde": detectable_difference(m, n)}


def two_way_bootstrap(pairs: pd.DataFrame, n_boot: int = 10_000, level: float = 0.95,
                      random_state: int | np.random.Generator = 0, chunk: int = 1000) -> tuple[float, float]:
    """Percentile interval of the pooled accuracy difference, resampling seeds and clips.

    Each replicate draws the seeds with replacement and, independently, the clips with
    replacement (one clip draw shared by every seed: the clips are the same test set);
    the replicate's difference is the mean of ``a - b`` over the drawn (seed, clip) cells
    that were scored. (nan, nan) without pairs.
    """
    if pairs.empty:
        return np.nan, np.nan
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    seed_pos, seeds = pd.factorize(pairs["seed"])
    clip_pos = _clip_codes(pairs)
    n_clips = int(clip_pos.max()) + 1
    diff = np.zeros((len(seeds), n_clips))
    scored = np.zeros((len(seeds), n_clips))
    diff[seed_pos, clip_pos] = pairs["a"].to_numpy(dtype=float) - pairs["b"].to_numpy(dtype=float)
    scored[seed_pos, clip_pos] = 1.0
    out = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        seed_w = _resample_counts(rng, len(seeds), size)
        clip_w = _resample_counts(rng, n_clips, size)
        num = ((seed_w @ diff) * clip_w).sum(1)
        den = ((seed_w @ scored) * clip_w).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(num / den)
    draws = np.concatenate(out)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return np.nan, np.nan
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def _resample_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``[size, n]``: how often each of ``n`` units is drawn in each of ``size`` resamples of n."""
    draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)


def clip_comparison(pairs: pd.DataFrame, n_boot: int = 10_000, random_state: int | np.random.Generator = 0) -> dict:
    """:func:`sign_flip_test` plus the :func:`two_way_bootstrap` interval (``low``, ``high``)."""
    line = sign_flip_test(pairs)
    line["low"], line["high"] = two_way_bootstrap(pairs, n_boot, random_state=random_state) if len(pairs) \
        else (np.nan, np.nan)
    return line


__all__ = ["clip_comparison", "clip_pairs", "clip_sums", "detectable_difference", "load_predictions", "read_predictions",
           "sign_flip_pvalue", "sign_flip_test", "task_of", "two_way_bootstrap"]
