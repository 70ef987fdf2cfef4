"""benchmarks/serve_load.py: the Welch table of lock vs batch over the repeats."""

from __future__ import annotations

from typing import Any

from serve_load import welch  # benchmarks/ is on pytest's pythonpath


def rows(access: str, clients: int, rps: list[float]) -> list[dict[str, Any]]:
    """One row per repeat; p50 = 100 / rps and p99 = 2 * p50, so all three fields differ."""
    return [
        {
            "access": access,
            "clients": clients,
            "requests_per_second": r,
            "p50_ms": 100.0 / r,
            "p99_ms": 200.0 / r,
        }
        for r in rps
    ]


def test_welch_ratio_and_p_match_a_hand_computation() -> None:
    # lock 1, 2, 3 against batch 4, 5, 6: means 2 and 5, both variances 1, so
    # t = 3 / sqrt(2 / 3) = 3.674 with 4 degrees of freedom: two-sided p = 0.0213.
    table = welch(rows("lock", 8, [1, 2, 3]) + rows("batch", 8, [4, 5, 6]), "lock", "batch")
    line = table.splitlines()[2]
    assert line.startswith("| 8 | 3 / 3 | 2.50, p 0.021 |")


def test_a_level_with_one_run_of_a_mode_has_no_row() -> None:
    data = rows("lock", 1, [10.0]) + rows("batch", 1, [11.0, 12.0])
    data += rows("lock", 32, [1.0, 2.0]) + rows("batch", 32, [1.0, 2.0])
    lines = welch(data, "lock", "batch").splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("| 32 | 2 / 2 | 1.00, p 1.000 |")
