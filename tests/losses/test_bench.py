"""``retrievalkit bench``: times the chosen losses and writes a row per (loss, B)."""

import json

import pytest

from retrievalkit.cli import main
from retrievalkit.losses.bench import fmt


def test_bench_prints_and_writes_rows(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--sizes", "8", "16", "--reps", "1", "--losses", "contrastive", "smooth_ap"]
    assert main([*args, "--json", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + 4  # header + 2 sizes x 2 losses
    rows = json.loads(out.read_text())
    assert [(r["loss"], r["B"]) for r in rows] == [
        ("contrastive", 8),
        ("smooth_ap", 8),
        ("contrastive", 16),
        ("smooth_ap", 16),
    ]
    assert all(r["ours"] > 0 and r["floor"] > 0 for r in rows)


def test_bad_arguments_and_cell_format(capsys):
    assert main(["bench", "--sizes", "1"]) == 2
    assert "--sizes must be >= 2" in capsys.readouterr().err
    assert fmt(None) == "-" and fmt(0.0123, " s") == "12.30 ms" and fmt(1.5, " s") == "1.500 s"


def test_floors_run_exactly_the_needed_matmuls():
    """The fair floors: ``x x^T`` forward + ONE backward matmul; ``img txt^T`` forward +
    the two backward matmuls (S stands in for dL/dS; timing only)."""
    import torch

    from retrievalkit.losses.bench import CrossFloor, GramFloor, make_case

    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    GramFloor.apply(x).backward()
    s = x.detach() @ x.detach().T
    torch.testing.assert_close(x.grad, s @ x.detach())
    img = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    CrossFloor.apply(img, txt).backward()
    s = img.detach() @ txt.detach().T
    torch.testing.assert_close(img.grad, s @ txt.detach())
    torch.testing.assert_close(txt.grad, s.T @ img.detach())
    case = make_case("vse_mh", 8)
    assert all(case.step(impl) is not None for impl in ("floor", "autograd_floor", "ours", "ref"))
    assert make_case("smooth_ap", 1024).step("ref") is None  # PML's B^3 memory: not run


@pytest.mark.parametrize("b", [128, 1024])
def test_benchmark_pairs_have_active_hinges(b):
    """The timed VSE step is a training-like one: many hinges active, a loss above 0."""
    from retrievalkit.losses import VSELoss
    from retrievalkit.losses.bench import make_pairs

    img, txt = make_pairs(b)
    sim = img @ txt.T
    active = (0.2 + sim - sim.diagonal().unsqueeze(1)).fill_diagonal_(0) > 0
    assert active.any(dim=1).float().mean() > 0.4  # MH: queries with a violating negative
    assert VSELoss(0.2, max_violation=False)(img, txt) > 0
