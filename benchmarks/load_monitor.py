"""The load that OTHER jobs put on the machine while a benchmark runs (Linux ``/proc``).

The 1-minute load average counts every runnable thread, the benchmark's own
included: a 2-thread benchmark alone on 2 cores reads about 2 (OpenMP threads
also spin while they wait), so a rule "load <= 0.75 per core" read off the load
average rejects a run that nothing disturbed. :class:`LoadMonitor` samples, in a
background thread every ``interval`` seconds, the machine's runnable and
uninterruptible tasks (``procs_running + procs_blocked`` of ``/proc/stat``, what
the load average counts) minus this process's own threads in state R or D
(``/proc/self/task/*/stat``): the threads of the other jobs. For a span of the
run it gives their mean (and maximum), and it keeps the process's own share of
the 1-minute load average, estimated with the kernel's exponential decay
(60 s time constant) from the same samples, so the load average read before or
after a span can be corrected by it (``others_load``).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LOAD_TIME_CONSTANT = 60.0  # seconds: the kernel's 1-minute load average


def machine_active_tasks() -> int:
    """Runnable + uninterruptible tasks on the machine (``/proc/stat``)."""
    counts = {}
    for line in Path("/proc/stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in ("procs_running", "procs_blocked"):
            counts[key] = int(value)
    return sum(counts.values())


def own_active_threads() -> int:
    """This process's threads in state R (running) or D (uninterruptible)."""
    count = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        count += stat[stat.rindex(")") + 2] in "RD"
    return count


@dataclass(frozen=True)
class SpanLoad:
    """The other jobs' active threads over a span: ``mean``, ``peak`` and ``samples``."""

    mean: float
    peak: int
    samples: int


class LoadMonitor:
    """Background sampler of the other jobs' load (see the module docstring).

    Use as a context manager around the whole run; :meth:`mark` before a span and
    :meth:`span` after it; :meth:`others_load` corrects the 1-minute load average
    by this process's own estimated share.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.others: list[int] = []
        self.own_share = 0.0  # this process's estimated part of the 1-minute load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._last = time.monotonic()

    def __enter__(self) -> LoadMonitor:
        self._last = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """One sample (the background thread calls this every ``interval`` s)."""
        own = own_active_threads()  # includes the calling thread, running now
        others = max(0, machine_active_tasks() - own)
        now = time.monotonic()
        with self._lock:
            decay = math.exp(-(now - self._last) / LOAD_TIME_CONSTANT)
            # the sampling thread itself is not part of the load it measures
            self.own_share = self.own_share * decay + max(0, own - 1) * (1 - decay)
            self._last = now
            self.others.append(others)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def mark(self) -> int:
        """The number of samples so far: the start of a span."""
        with self._lock:
            return len(self.others)

    def span(self, start: int) -> SpanLoad:
        """The other jobs' active threads in the samples since ``start``."""
        with self._lock:
            values = self.others[start:]
        if not values:  # a span shorter than one interval: sample now
            self.sample()
            with self._lock:
                values = self.others[-1:]
        return SpanLoad(sum(values) / len(values), max(values), len(values))

    def others_load(self) -> tuple[float, float]:
        """``(1-minute load average, the same minus this process's estimated share)``."""
        load = os.getloadavg()[0]
        with self._lock:
            return load, max(0.0, load - self.own_share)
