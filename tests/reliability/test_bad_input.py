"""Each malformed input of ``bad_inputs.CASES`` gives its one-line message, and
RELIABILITY.md's table is generated from the same cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.bad_inputs import CASES, markdown_table

RELIABILITY = Path(__file__).resolve().parents[2] / "RELIABILITY.md"


def test_at_least_twenty_cases_in_every_area():
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)
    assert {c.area for c in CASES} >= {"CLI", "recipe", "data", "index", "service"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_line(case, tmp_path_factory):
    shared = tmp_path_factory.getbasetemp() / "bad_inputs"  # the tiny run is trained once
    tmp = shared / case.id
    tmp.mkdir(parents=True)
    message = case.run(tmp)
    assert "\n" not in message and "Traceback" not in message
    assert case.matches(message, tmp), f"got: {message}"


def test_reliability_md_lists_these_cases():
    text = RELIABILITY.read_text(encoding="utf-8")
    assert markdown_table() in text, "regenerate: python -m tests.reliability.bad_inputs"
