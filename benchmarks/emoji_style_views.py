"""Score one emoji checkpoint on each art style's view of the test split.

    python benchmarks/emoji_style_views.py RUN_OR_CHECKPOINT [--json]

For a run trained with ``--set data.options.held_out_style=STYLE`` this is the
held-out-style protocol: text -> image R@5 on the unseen style against the mean
over the seen styles (same test emoji, each view scored on its own: one image
per emoji, the CLDR captions as queries). Goal in issue 10: ratio >= 0.80.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    from retrievalkit.pipeline.build import build_transform, load_splits
    from retrievalkit.pipeline.evaluate import evaluate_cross_modal
    from retrievalkit.pipeline.load import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    path = args.checkpoint
    if (path / "checkpoints" / "best").is_dir():
        path = path / "checkpoints" / "best"
    loaded = load_model(path)
    data = loaded.config.data
    splits = load_splits(data)
    transform = build_transform("image", data, train=False)
    held_out = data.options.get("held_out_style")
    rows = {}
    for name, split in splits.items():
        if name.startswith("test_"):
            record = evaluate_cross_modal(loaded.model, split, transform)
            rows[name.removeprefix("test_")] = record
    seen = [r["t2i_r5"] for s, r in rows.items() if s != held_out]
    result = {
        "checkpoint": str(path),
        "held_out_style": held_out,
        "t2i_r5": {s: r["t2i_r5"] for s, r in rows.items()},
        "i2t_r5": {s: r["i2t_r5"] for s, r in rows.items()},
        "n_images": {s: r["n_images"] for s, r in rows.items()},
    }
    if held_out:
        result["ratio_unseen_to_seen_t2i_r5"] = rows[held_out]["t2i_r5"] / statistics.mean(seen)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{path} (held-out style: {held_out or 'none'})")
    print("style      t2i R@5  i2t R@5  images")
    for style, record in rows.items():
        mark = "  <- never seen in training" if style == held_out else ""
        print(
            f"{style:<10} {record['t2i_r5']:7.1f}  {record['i2t_r5']:7.1f}  "
            f"{record['n_images']:6d}{mark}"
        )
    if held_out:
        print(
            f"unseen / mean of seen styles, t2i R@5: {rows[held_out]['t2i_r5']:.1f} / "
            f"{statistics.mean(seen):.1f} = {result['ratio_unseen_to_seen_t2i_r5']:.2f} "
            "(goal >= 0.80)"
        )


if __name__ == "__main__":
    main()
