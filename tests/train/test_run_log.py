"""Run logs: a stage that adds a loss term adds a CSV column; resume keeps the header."""

from retrievalkit.training.plots import plot_curves
from retrievalkit.training.run_log import RunLog


def test_new_loss_term_adds_a_column_and_keeps_earlier_rows(tmp_path):
    log = RunLog(tmp_path)
    log.log_step({"step": 1, "epoch": 1, "lr": 0.1, "instance": 5.0, "total": 5.0})
    log.log_step({"step": 2, "epoch": 1, "lr": 0.1, "instance": 4.0, "total": 4.0})
    log.log_step({"step": 3, "epoch": 2, "lr": 0.1, "instance": 3.0, "total": 9.0, "vse": 6.0})
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0]
    assert header == "step,epoch,lr,instance,total,vse"
    rows = RunLog(tmp_path).read_steps()
    assert [row.get("vse") for row in rows] == [None, None, 6.0]
    assert [row["total"] for row in rows] == [5.0, 4.0, 9.0]
    # resume: truncate to step 2 from a fresh RunLog, then log stage 2 again
    resumed = RunLog(tmp_path)
    resumed.truncate_after(step=2, epoch=1)
    resumed.log_step({"step": 3, "epoch": 2, "lr": 0.1, "instance": 3.5, "total": 9.5, "vse": 6.0})
    assert [row["total"] for row in resumed.read_steps()] == [5.0, 4.0, 9.5]
    assert plot_curves(resumed, tmp_path / "curves.png").stat().st_size > 0
