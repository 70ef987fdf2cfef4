"""Peak resident-memory growth of one call, measured in fresh subprocesses (Linux).

A benchmark script re-runs itself with a hidden probe option; the probe calls
:func:`print_peak_growth` around the step, and the parent takes the median of
:func:`median_probe` runs. ``ru_maxrss`` is not used: Linux carries it over from
the parent across ``exec``; the ``VmHWM`` high-water mark is reset instead.
"""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Callable
from typing import Any


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (e.g. ``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no field {field!r}")


def print_peak_growth(call: Callable[[], Any]) -> None:
    """Run ``call`` once and print its peak RSS growth in MiB (last stdout line)."""
    before = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the VmHWM high-water mark to the current RSS
    result = call()
    print((status_kib("VmHWM") - before) / 1024)
    del result


def median_probe(cmd: list[str], runs: int = 3) -> float:
    """Median of the MiB figure printed last by ``runs`` fresh runs of ``cmd``."""
    values = []
    for _ in range(runs):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        values.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(values)
