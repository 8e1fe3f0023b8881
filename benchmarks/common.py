"""Shared helpers: timing, machine description, Markdown tables, progress output."""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

# distribution names whose versions the report lists, with the label to show
VERSIONED = (
    ("raytrader", "raytrader"),
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("numba", "numba"),
    ("TA-Lib", "TA-Lib"),
    ("backtesting", "backtesting"),
    ("vectorbt", "vectorbt"),
    ("ray", "ray"),
)

_T0 = time.perf_counter()


def log(msg: str) -> None:
    """Progress line on stdout, prefixed with the seconds since the run started."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall-clock seconds of the timed repeats (warm-up calls are not included)."""

    samples: list[float]
    warmup: int
    cpu: list[float] = field(default_factory=list)  # process CPU s (user + system, all threads)
    sys: list[float] = field(default_factory=list)  # of which system (kernel) CPU s
    faults: list[int] = field(default_factory=list)  # minor page faults (fresh memory touched)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def cpu_per_wall(self) -> float:
        """Median of CPU time / wall time per repeat: ~1 single-threaded, ~2 using both cores."""
        if not self.cpu:
            return float("nan")
        return statistics.median(
            c / w for c, w in zip(self.cpu, self.samples, strict=True) if w > 0
        )

    @property
    def faults_median(self) -> float:
        return statistics.median(self.faults) if self.faults else float("nan")

    @property
    def user_median(self) -> float:
        if not self.cpu:
            return float("nan")
        return statistics.median(c - s for c, s in zip(self.cpu, self.sys, strict=True))

    @property
    def sys_median(self) -> float:
        return statistics.median(self.sys) if self.sys else float("nan")


def timed(fn: Callable[[], Any], t: Timing) -> None:
    """Call ``fn`` once and append its wall time, CPU time and page faults to ``t``."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    fn()
    t.samples.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    t.sys.append(r1.ru_stime - r0.ru_stime)
    t.cpu.append(r1.ru_utime - r0.ru_utime + t.sys[-1])
    t.faults.append(r1.ru_minflt - r0.ru_minflt)


def measure(fn: Callable[[], Any], *, repeat: int, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times timed with ``perf_counter``.

    A garbage collection runs before the warm-up so garbage left by earlier work is not collected
    inside a timed call; the collector stays enabled during the repeats (as in real use).
    """
    gc.collect()
    for _ in range(warmup):
        fn()
    t = Timing([], warmup)
    for _ in range(repeat):
        timed(fn, t)
    return t


@dataclass
class Job:
    """One contender of :func:`interleaved`: ``per_round`` timed calls in each round."""

    fn: Callable[[], Any]
    per_round: int
    warmup: int = 1


def interleaved(jobs: dict[str, Job], *, rounds: int) -> dict[str, Timing]:
    """Time several contenders in alternating rounds (A×a, B×b, … then again) after warm-ups.

    On a shared machine a slow spell then hits every contender about equally, instead of whichever
    happened to run during it; ratios of medians are therefore fairer than with back-to-back runs.
    """
    gc.collect()
    for job in jobs.values():
        for _ in range(job.warmup):
            job.fn()
    out = {name: Timing([], job.warmup) for name, job in jobs.items()}
    for _ in range(rounds):
        for name, job in jobs.items():
            for _ in range(job.per_round):
                timed(job.fn, out[name])
    return out


def fmt_s(seconds: float) -> str:
    """Human-friendly duration: µs / ms / s with three significant digits."""
    if seconds != seconds:  # NaN
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_x(ratio: float) -> str:
    return f"{ratio:.3g}×"


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "— (no target)"
    return "**PASS**" if ok else "**MISS**"


# ------------------------------------------------------------------------------------------ reports
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    head = "| " + " | ".join(headers) + " |"
    sep = "|" + "|".join("---" for _ in headers) + "|"
    body = ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


@dataclass
class Verdict:
    benchmark: str
    target: str
    result: str
    ok: bool | None  # None: reported only, no target


@dataclass
class Section:
    """One benchmark's report: a title, Markdown body and the target verdicts it produced."""

    name: str
    title: str
    body: str
    verdicts: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0

    def markdown(self) -> str:
        return f"## {self.title}\n\n{self.body.strip()}\n"


# ----------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev} (working tree has uncommitted changes)" if dirty else rev


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f}"


def machine_rows() -> list[tuple[str, str]]:
    import numba

    return [
        ("CPU", _cpu_model()),
        ("cores (os.cpu_count)", str(os.cpu_count())),
        ("RAM", _ram_gib()),
        ("OS", _os_name()),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("numba threads", str(numba.get_num_threads())),
        (
            "NUMBA_CACHE_DIR",
            os.environ.get("NUMBA_CACHE_DIR", "(unset: __pycache__ next to sources)"),
        ),
        ("git revision", _git_revision()),
        ("interpreter", sys.executable),
    ]


def version_rows() -> list[tuple[str, str]]:
    rows = []
    for dist, label in VERSIONED:
        try:
            rows.append((label, version(dist)))
        except PackageNotFoundError:
            rows.append((label, "not installed"))
    return rows


def utc_now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------- memory
def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) so the next read measures from now.

    Returns False where the kernel does not allow it.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def rss_bytes() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in bytes, from /proc/self/status."""
    cur = peak = 0
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cur, peak
