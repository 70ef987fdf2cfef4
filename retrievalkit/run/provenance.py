"""Results files that say where they came from: a header the writer adds itself.
(Over 300 lines on purpose: the header's writer, reader and command wrapper share one format.)

Every results file under ``results/`` starts with the same facts, collected here at
write time rather than typed by hand:

- ``command``: the command line that produced the file (default: this process's);
- ``commit``: the git commit of the source tree, ``<hash> (dirty)`` when tracked
  files differ from it or untracked files lie outside ``results/``;
- ``date``: UTC, ISO 8601, to the second;
- ``machine``: CPU count and model, torch version and its intra-op threads;
- ``seeds``: when the caller gives them.

``write_results(path, body, seeds=...)`` writes header + body atomically (a
temporary file in the same directory, fsynced, then renamed), so a reader never
sees half a file. The header's form follows the file's suffix: Markdown gets a
quoted block, JSON a ``"provenance"`` object beside ``"results"``, any other text
``# key: value`` comment lines. ``stdout_to_results(path)`` turns what a script prints into such a
file, and ``python -m retrievalkit.run.provenance --out FILE -- COMMAND ...`` does the
same for any command (its stdout becomes FILE; a failing command writes nothing).
``read_header`` parses it back (used by the tests
and by anyone checking a file's origin).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from retrievalkit.run.files import atomic_write_text

SOURCE_ROOT = Path(__file__).resolve().parents[2]
MARKDOWN_TITLE = "> Provenance (written by the script, not by hand)"


@dataclass(frozen=True)
class Provenance:
    """The facts a results file's header states (all plain strings, ready to print)."""

    command: str
    commit: str
    date: str
    machine: str
    seeds: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """``(key, value)`` pairs in header order; ``seeds`` only when given."""
        pairs = [
            ("command", self.command),
            ("commit", self.commit),
            ("date", self.date),
            ("machine", self.machine),
        ]
        return pairs + ([("seeds", self.seeds)] if self.seeds is not None else [])


def default_command(argv: Sequence[str] | None = None) -> str:
    """This process's command line, as a reader would retype it.

    A script (``argv[0]`` ending in ``.py``) becomes ``python <path>`` with the path
    relative to the source root when it lies inside it; ``python -m retrievalkit``
    (``argv[0]`` is the package's ``__main__.py``) becomes ``retrievalkit``.
    """
    words = list(sys.argv if argv is None else argv)
    if not words:
        return "python"
    first = Path(words[0])
    if first.name == "__main__.py" and first.parent.name == "retrievalkit":
        return shlex.join(["retrievalkit", *words[1:]])
    if first.suffix == ".py":
        try:
            shown = str(first.resolve().relative_to(SOURCE_ROOT))
        except ValueError:
            shown = str(first)
        return shlex.join(["python", shown, *words[1:]])
    return shlex.join([first.name, *words[1:]])


def _git(root: Path, *words: str) -> str:
    command = ["git", "-C", str(root), *words]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def git_commit(root: Path = SOURCE_ROOT) -> str:
    """``<short hash>``, ``<short hash> (dirty)`` or ``unknown (<why>)``.

    Dirty means: a tracked file differs from the commit, or an untracked, not ignored
    file exists outside ``results/`` (a results file being written is not a source
    change; a new, uncommitted script is).
    """
    try:
        head = _git(root, "rev-parse", "--short", "HEAD").strip()
        status = _git(root, "status", "--porcelain").splitlines()
    except FileNotFoundError:
        return "unknown (git not installed)"
    except subprocess.CalledProcessError:
        return "unknown (not a git checkout)"
    changed = [line for line in status if not line[3:].startswith("results/")]
    return head + (" (dirty)" if changed else "")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    """One line: CPU count and model, torch version, torch's intra-op thread count."""
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def collect(
    command: str | Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> Provenance:
    """The header's facts now. ``command``: a string, a word list, or None (this process)."""
    if command is None:
        shown = default_command()
    elif isinstance(command, str):
        shown = command
    else:
        shown = shlex.join(list(command))
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    seed_text = None if seeds is None else ", ".join(str(int(s)) for s in seeds)
    return Provenance(shown, git_commit(), date, machine(), seed_text)


def render(path: Path, body: Any, prov: Provenance) -> str:
    """The file's full text: header in the form the suffix calls for, then ``body``.

    ``body`` is text, except for ``.json`` where it is any JSON-serialisable value.
    """
    if path.suffix == ".json":
        return json.dumps({"provenance": dict(prov.items()), "results": body}, indent=2) + "\n"
    if not isinstance(body, str):
        raise TypeError(f"{path}: body must be text for a {path.suffix or 'plain'} file")
    if path.suffix == ".md":
        header = [MARKDOWN_TITLE, ">"] + [f"> - {k}: `{v}`" for k, v in prov.items()]
        return "\n".join(header) + "\n\n" + body.rstrip("\n") + "\n"
    header = [f"# {k}: {v}" for k, v in prov.items()]
    return "\n".join(header) + "\n" + body.rstrip("\n") + "\n"


def write_results(
    path: str | Path,
    body: Any,
    *,
    command: str | Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    provenance: Provenance | None = None,
) -> Path:
    """Write ``body`` under a provenance header to ``path``, atomically; return the path.

    Args:
        path: the results file; its suffix picks the header's form (see ``render``).
        body: the file's content (text; any JSON value for ``.json``).
        command: the command line to state (default: this process's).
        seeds: the seeds the figures come from, when there are any.
        provenance: facts collected earlier (e.g. at the start of a long run);
            overrides ``command`` and ``seeds``.
    """
    path = Path(path)
    prov = provenance or collect(command, seeds)
    atomic_write_text(path, render(path, body, prov))
    return path


class _Tee:
    """A text stream that writes through to ``stream`` and keeps a copy."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextmanager
def stdout_to_results(
    path: str | Path | None,
    *,
    command: str | Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> Iterator[None]:
    """Everything printed inside the block also becomes the results file ``path``.

    The header's facts are collected when the block starts (the commit and machine
    the run began on); the file is written atomically when the block ends normally.
    If the block raises, nothing is written and an older file stays. ``path=None``
    only prints (e.g. a quick run that should not replace the kept results).
    """
    if path is None:
        yield
        return
    prov = collect(command, seeds)
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = tee.stream
    write_results(path, "".join(tee.parts), provenance=prov)
    print(f"results written to {path}", file=sys.stderr)


def read_header(path: str | Path) -> dict[str, str]:
    """The header's ``key -> value`` pairs of a file written by ``write_results``.

    Raises ValueError (naming the file) when the file has no such header.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, dict) or "provenance" not in data:
            raise ValueError(f"{path}: no 'provenance' object at the top level")
        return {str(k): str(v) for k, v in data["provenance"].items()}
    lines = text.splitlines()
    pairs: dict[str, str] = {}
    if path.suffix == ".md":
        if not lines or lines[0] != MARKDOWN_TITLE:
            raise ValueError(f"{path}:1: expected the line {MARKDOWN_TITLE!r}")
        for line in lines[2:]:
            if not line.startswith("> - "):
                break
            key, value = line[4:].split(": ", 1)
            pairs[key] = value.strip("`")
    else:
        for line in lines:
            if not line.startswith("# ") or ": " not in line:
                break
            key, value = line[2:].split(": ", 1)
            pairs[key] = value
    if "command" not in pairs or "commit" not in pairs:
        raise ValueError(f"{path}: the header lacks 'command' or 'commit'")
    return pairs


def record_command(out: Path, command: Sequence[str], seeds: Sequence[int] | None = None) -> int:
    """Run ``command``, echo its stdout, and write that stdout to ``out`` under a header.

    The header states ``command`` itself. Returns the command's exit status; nothing is
    written when it is not 0.
    """
    prov = collect(command, seeds)
    parts = []
    with subprocess.Popen(list(command), stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            parts.append(line)
    if proc.returncode != 0:
        print(
            f"provenance: {command[0]} exited with {proc.returncode}; {out} not written",
            file=sys.stderr,
        )
        return proc.returncode
    write_results(out, "".join(parts), provenance=prov)
    print(f"results written to {out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m retrievalkit.run.provenance --out FILE [--seeds 0 1 2] -- COMMAND ...``"""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m retrievalkit.run.provenance",
        description="run a command and keep its stdout as a results file with a provenance header",
    )
    parser.add_argument("--out", type=Path, required=True, help="the results file to write")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="seeds to state")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS ...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    return record_command(args.out, command, args.seeds)


if __name__ == "__main__":
    sys.exit(main())
