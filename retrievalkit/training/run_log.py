"""The run's CSV logs: per-step training losses and per-epoch validation scores.

Files are appended as the run goes; on resume the rows past the checkpoint's
step are dropped first, so a resumed run's log equals an uninterrupted one's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

STEPS_FILE = "train_log.csv"
EPOCHS_FILE = "val_log.jsonl"


class RunLog:
    """Append-only logs in ``run_dir``: ``train_log.csv`` and ``val_log.jsonl``."""

    def __init__(self, run_dir: Path) -> None:
        self.steps_path = run_dir / STEPS_FILE
        self.epochs_path = run_dir / EPOCHS_FILE
        self._columns: list[str] | None = None
        if self.steps_path.exists():
            with open(self.steps_path, newline="") as handle:
                header = next(csv.reader(handle), None)
            self._columns = header

    def truncate_after(self, step: int, epoch: int) -> None:
        """Drop step rows with ``step > step`` and epoch rows with ``epoch > epoch``."""
        if self.steps_path.exists():
            with open(self.steps_path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            kept = [row for row in rows if int(row["step"]) <= step]
            self._rewrite_steps(kept)
        if self.epochs_path.exists():
            lines = self.epochs_path.read_text().splitlines()
            kept_lines = [ln for ln in lines if ln and json.loads(ln)["epoch"] <= epoch]
            self.epochs_path.write_text("".join(line + "\n" for line in kept_lines))

    def _rewrite_steps(self, rows: list[dict[str, Any]]) -> None:
        if self._columns is None:
            return
        with open(self.steps_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(rows)

    def log_step(self, values: dict[str, Any]) -> None:
        """One training step's values (step, epoch, lr, loss terms).

        A stage that adds a loss term adds a column: the file is rewritten once
        with the wider header (earlier rows leave the new column empty).
        """
        if self._columns is None:
            self._columns = list(values)
            with open(self.steps_path, "w", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self._columns).writeheader()
        new_columns = [key for key in values if key not in self._columns]
        if new_columns:
            with open(self.steps_path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            self._columns = self._columns + new_columns
            self._rewrite_steps(rows)
        with open(self.steps_path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self._columns).writerow(values)

    def log_epoch(self, record: dict[str, Any]) -> None:
        with open(self.epochs_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_steps(self) -> list[dict[str, float]]:
        if not self.steps_path.exists():
            return []
        with open(self.steps_path, newline="") as handle:
            return [
                {k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)
            ]

    def read_epochs(self) -> list[dict[str, Any]]:
        if not self.epochs_path.exists():
            return []
        return [json.loads(line) for line in self.epochs_path.read_text().splitlines() if line]
