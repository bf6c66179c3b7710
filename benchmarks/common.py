"""Shared bits of the benchmark scripts: timing summaries, table printing, JSON output."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def time_calls(fn, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return summarize_ms(samples)


def time_interleaved(fns: dict, runs: int, warmup: int) -> dict:
    """Time several callables side by side: each round calls every one once, in an order that rotates from
    round to round, so load changes on a shared machine hit all of them alike (timing them one after the
    other lets the first one see a quieter machine than the last). Returns {label: summarize_ms(...)}."""
    labels = list(fns)
    for _ in range(warmup):
        for label in labels:
            fns[label]()
    samples = {label: [] for label in labels}
    for k in range(runs):
        for label in labels[k % len(labels):] + labels[:k % len(labels)]:
            t0 = time.perf_counter()
            fns[label]()
            samples[label].append((time.perf_counter() - t0) * 1e3)
    return {label: summarize_ms(values) for label, values in samples.items()}


def summarize_ms(samples) -> dict:
    a = np.asarray(samples, float)
    if a.size == 0:
        return {"n": 0, "median_ms": float("nan"), "p95_ms": float("nan")}
    return {"n": int(a.size), "median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)),
            "min_ms": float(a.min()), "max_ms": float(a.max())}


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in cells:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


def machine() -> dict:
    import os

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "processor": platform.processor()}


def git_commit() -> str | None:
    """The checkout's short commit, recorded with each result (None outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(path: Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(payload, machine=machine(), written=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    payload.setdefault("commit", git_commit())
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
