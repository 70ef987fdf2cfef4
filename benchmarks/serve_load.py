"""Load test of ``retrievalkit serve`` on loopback: 1, 8, 32 concurrent clients.

For each model access mode (``lock``: one pass per request; ``batch``:
micro-batching of the requests waiting for the model) this starts the service
as a subprocess on 127.0.0.1, warms it up, then runs each client level for a
fixed number of requests (or a time limit, whichever comes first) and prints
requests/s, p50/p95/p99 latency, errors, the server's resident memory before
and after the level, and from its Prometheus metrics the mean wait for the
model, the mean model pass and the mean queries per pass.

    python benchmarks/serve_load.py --index runs/serve_bench/index \\
        --clients 1 8 32 --requests 600 --duration 60 --json runs/serve_load.json

Queries are the 190 typed emoji queries of ``benchmarks/emoji_queries.tsv``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from loadtest import rss_mib, run_level, wait_until_healthy
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats
from seed_stats import fmt_p

from retrievalkit.run.provenance import stdout_to_results

QUERIES = Path(__file__).with_name("emoji_queries.tsv")


def load_queries(path: Path = QUERIES) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines if line.strip() and not line.startswith("#")]


def model_counters(url: str) -> dict[str, float]:
    """Sums and counts of the model histograms (``/metrics``)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    wanted = {
        "retrievalkit_model_wait_seconds_sum": "wait_s",
        "retrievalkit_model_seconds_sum": "model_s",
        "retrievalkit_model_seconds_count": "passes",
        "retrievalkit_queries_total": "queries",
    }
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                out[wanted[sample.name]] = sample.value
    return out


def start_server(index: Path, port: int, access: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "retrievalkit", "serve", str(index), "--port", str(port),
               "--model-access", access]  # fmt: skip
    with open(log, "w") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)


def run_mode(args: argparse.Namespace, access: str, queries: list[str]) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{args.port}"
    log = Path(args.log_dir) / f"serve_{access}.log"
    server = start_server(args.index, args.port, access, log)
    rows = []
    try:
        wait_until_healthy(url)
        run_level(url, clients=4, requests=40, duration=30, queries=queries)  # warm-up
        for clients in args.clients:
            before_rss, before = rss_mib(server.pid), model_counters(url)
            result = run_level(url, clients, args.requests, args.duration, queries, k=args.k)
            after_rss, after = rss_mib(server.pid), model_counters(url)
            passes = after["passes"] - before["passes"]
            row = {
                "access": access,
                **result.to_dict(),
                "rss_before_mib": before_rss,
                "rss_after_mib": after_rss,
                "mean_wait_ms": 1000 * (after["wait_s"] - before["wait_s"]) / passes,
                "mean_pass_ms": 1000 * (after["model_s"] - before["model_s"]) / passes,
                "queries_per_pass": (after["queries"] - before["queries"]) / passes,
            }
            rows.append(row)
            print(format_row(row), flush=True)
            if result.error_kinds:
                print(f"errors: {result.error_kinds}", file=sys.stderr, flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return rows


HEADER = (
    "| access | clients | requests | errors | req/s | p50 ms | p95 ms | p99 ms | "
    "wait for model ms | model pass ms | queries/pass | RSS MiB before -> after |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['access']} | {r['clients']} | {r['requests']} | {r['errors']} | "
        f"{r['requests_per_second']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
        f"{r['p99_ms']:.1f} | {r['mean_wait_ms']:.1f} | {r['mean_pass_ms']:.1f} | "
        f"{r['queries_per_pass']:.2f} | {r['rss_before_mib']:.0f} -> {r['rss_after_mib']:.0f} |"
    )


def summary(rows: list[dict[str, Any]]) -> str:
    """Mean and (min..max) over the repeats of req/s, p50 and p99, per mode and level."""
    lines = [
        "| access | clients | runs | req/s mean (min..max) | p50 ms mean (min..max) | "
        "p99 ms mean (min..max) | queries/pass | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["access"], r["clients"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for access, clients in keys:
        group = [r for r in rows if r["access"] == access and r["clients"] == clients]

        def span(field: str, group: list[dict[str, Any]] = group) -> str:
            values = [r[field] for r in group]
            return f"{sum(values) / len(values):.1f} ({min(values):.1f}..{max(values):.1f})"

        passes = sum(r["queries_per_pass"] for r in group) / len(group)
        errors = sum(r["errors"] for r in group)
        lines.append(
            f"| {access} | {clients} | {len(group)} | {span('requests_per_second')} | "
            f"{span('p50_ms')} | {span('p99_ms')} | {passes:.2f} | {errors} |"
        )
    return "\n".join(lines)


def welch(rows: list[dict[str, Any]], a: str, b: str) -> str:
    """Welch's t-test (two-sided, over the repeats) of access ``a`` against ``b`` per level.

    For req/s, p50 and p99; a level needs at least 2 runs of each mode, else no row.
    """
    lines = [
        f"| clients | runs {a} / {b} | req/s {b} / {a}, p | p50 {b} / {a}, p | p99 {b} / {a}, p |",
        "|---|---|---|---|---|",
    ]
    for clients in sorted({r["clients"] for r in rows}):
        group = {
            m: [r for r in rows if r["access"] == m and r["clients"] == clients] for m in (a, b)
        }
        if min(len(g) for g in group.values()) < 2:
            continue
        cells = []
        for field in ("requests_per_second", "p50_ms", "p99_ms"):
            xa, xb = ([r[field] for r in group[m]] for m in (a, b))
            p = stats.ttest_ind(xb, xa, equal_var=False).pvalue
            ratio = (sum(xb) / len(xb)) / (sum(xa) / len(xa))
            cells.append(f"{ratio:.2f}, p {fmt_p(float(p))}")
        runs = f"{len(group[a])} / {len(group[b])}"
        lines.append(f"| {clients} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loadavg() -> str:
    """The 1/5/15-minute load averages, for the results file."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=600, help="per level")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per level, at most")
    parser.add_argument("--access", nargs="+", default=["lock", "batch"])
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--log-dir", default=os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the access modes")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="results file (default: results/bench/serve_load.md)"
    )
    args = parser.parse_args()
    with stdout_to_results(args.out or "results/bench/serve_load.md"):
        queries = load_queries()
        print(f"load average before: {loadavg()}\n", flush=True)
        print(HEADER, flush=True)
        rows = []
        for repeat in range(args.repeats):  # modes interleaved, so a busy spell hits both
            for access in args.access:
                rows += [{**row, "repeat": repeat} for row in run_mode(args, access, queries)]
        print()
        print(summary(rows))
        if len(args.access) == 2:
            print(
                f"\nWelch's t-test over the repeats, ratio of means {args.access[1]} / {args.access[0]}:\n"
            )
            print(welch(rows, *args.access))
        print(f"\nload average after: {loadavg()}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2))
        return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
