"""benchmarks/load_monitor.py: the other jobs' load, without this process's threads."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc only")


def load_monitor_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "load_monitor.py"
    spec = importlib.util.spec_from_file_location("load_monitor", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_monitor"] = module
    spec.loader.exec_module(module)
    return module


def test_own_threads_are_counted_and_left_out_of_the_others():
    lm = load_monitor_module()
    assert lm.own_active_threads() >= 1  # the calling thread is running
    assert lm.machine_active_tasks() >= 1
    with lm.LoadMonitor(interval=0.01) as monitor:
        start = monitor.mark()
        a = torch.randn(600, 600)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # this process busy (GIL released): not an other job
            a = torch.tanh(a @ a)
        span = monitor.span(start)
        load, others = monitor.others_load()
    assert span.samples >= 1 and 0 <= span.mean <= span.peak
    assert monitor.own_share > 0.0  # the busy thread was seen as this process's
    assert 0.0 <= others <= load
