"""mFSR ablation on emoji (the paper's Table 3 rows) over seeds: train, then one table.

Each row is the ``mfsr_emoji`` recipe with ``--set`` changes (the same ones the
recipe's header lists); each (row, seed) trains with ``retrievalkit train`` into
``OUT/<row>/seed<k>`` (a finished run, one with ``metrics.json``, is not trained
again). The table gives the test split's R@1/5/10 both ways and rsum of the
best-validation checkpoint, mean and sample std over the seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mfsr_emoji_ablation.py --out runs/ablation \\
        --seeds 0 1 2 [--rows vsepp full]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

VSE = "{name: vse, options: {margin: 0.2, max_violation: false}, inputs: {img: image.se, txt: text.se}}"
MO_SP = "{name: mfsr_modality, options: {margin: 1.0}}, {name: mfsr_specific}"
CAPTION = "{name: mfsr_caption}"
IMAGE = "{name: mfsr_image, options: {size: 32, base_channels: 16, pixel_weight: 10.0}}"
NO_GENERATOR = ["model.options.generator=null", "optim.groups=[]"]
NO_DECODER = ["model.options.decoder=null"]


def losses(*terms: str) -> str:
    return f"stages.0.losses=[{', '.join(terms)}]"


ROWS: dict[str, tuple[str, list[str]]] = {
    "vsepp": ("VSE++ (SH) on se, batch 24", [*NO_GENERATOR, *NO_DECODER, losses(VSE)]),
    "mo_sp": ("+ modality & specific", [*NO_GENERATOR, *NO_DECODER, losses(VSE, MO_SP)]),
    "mo_sp_img": ("+ mo & sp + image recon", [*NO_DECODER, losses(VSE, MO_SP, IMAGE)]),
    "mo_sp_cap": ("+ mo & sp + caption recon", [*NO_GENERATOR, losses(VSE, MO_SP, CAPTION)]),
    "full": ("full mFSR", []),
}
KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


def train(run_dir: Path, sets: list[str], seed: int) -> dict:
    metrics = run_dir / "metrics.json"
    if not metrics.exists():
        command = [sys.executable, "-m", "retrievalkit", "train", "mfsr_emoji"]
        command += ["--out", str(run_dir), "--no-progress", "--resume"]
        for item in [*sets, f"seed={seed}"]:
            command += ["--set", item]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)
    return json.loads(metrics.read_text())


def cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    args = parser.parse_args()
    lines = [
        "| row | seeds | i2t R@1 | i2t R@5 | i2t R@10 | t2i R@1 | t2i R@5 | t2i R@10 | rsum |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in args.rows:
        label, sets = ROWS[row]
        tests = [train(args.out / row / f"seed{s}", sets, s)["test"] for s in args.seeds]
        cells = [cell([float(t[key]) for t in tests]) for key in KEYS]
        lines.append(f"| {label} | {len(tests)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (args.out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
