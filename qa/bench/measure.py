"""Measuring helpers: percentiles, peak RSS, load average and the machine description."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.bench.results import Latency, Machine
from qa.ort import cpu_has_native_bf16


def percentiles(values_ms: Sequence[float]) -> Latency:
    """p50/p95/p99 of ``values_ms`` (numpy's linear interpolation)."""
    if not values_ms:
        raise ValueError("percentiles of no values")
    p50, p95, p99 = np.percentile(np.asarray(values_ms, dtype=np.float64), [50, 95, 99]).tolist()
    return Latency(p50, p95, p99)


def median_latency(runs: Sequence[Latency]) -> Latency:
    """Each percentile's median over repeats."""
    return Latency(
        float(np.median([r.p50_ms for r in runs])),
        float(np.median([r.p95_ms for r in runs])),
        float(np.median([r.p99_ms for r in runs])),
    )


def _status_kib(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; returns that RSS in MiB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") / 1024.0


def peak_rss_mib() -> float:
    """Peak RSS since the last reset (VmHWM), or ru_maxrss where /proc is unavailable."""
    hwm = _status_kib("VmHWM")
    if hwm:
        return hwm / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_average() -> float:
    """The 1-minute load average (0.0 where unknown)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return 0.0


def widest_simd() -> str:
    """The widest x86 vector extension in /proc/cpuinfo's flags ('' where none is listed or on other CPUs)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return ""


def machine_info() -> Machine:
    """CPU model, cores, RAM, library versions, date and git commit."""
    cpu = platform.processor() or platform.machine()
    ram = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = float(line.split()[1]) / 1024**2
    root = Path(__file__).resolve().parents[2]
    commit, dirty = "unknown", False
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True,
                                    text=True, timeout=10, check=True).stdout.strip())
    import faiss
    import torch

    return Machine(cpu=cpu, cores=os.cpu_count() or 0, ram_gib=ram, python=platform.python_version(),
                   torch=torch.__version__, faiss=faiss.__version__,
                   date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), git_commit=commit, git_dirty=dirty,
                   load_average=load_average(), native_bf16=cpu_has_native_bf16(), simd=widest_simd())
