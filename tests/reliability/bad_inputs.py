"""Malformed inputs and the one-line message a user sees for each (RELIABILITY.md).

Each :class:`Case` makes its bad input under a temporary directory, feeds it to
the CLI (``retrievalkit ...``, message = its ``error:`` line), a loader, the
index or the service (message = ``status loc: msg`` of the JSON error), and
returns that message. ``tests/reliability/test_bad_input.py`` asserts each one
and that RELIABILITY.md's table is :func:`markdown_table` of these cases; after
changing a case, regenerate the table with
``python -m tests.reliability.bad_inputs > /tmp/table.md``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from retrievalkit.cli import main
from retrievalkit.errors import USER_ERROR_EXIT

TINY = {
    "name": "tiny",
    "task": "cross_modal",
    "data": {"name": "synthetic_shapes", "options": {"n_images": 24, "size": 16},
             "image_size": 16, "batch_size": 8},
    "model": {"image": {"name": "small_cnn", "widths": [8], "out_dim": 8},
              "text": {"name": "gru", "word_dim": 8, "hidden_dim": 8}, "embed_dim": 8},
    "losses": [{"name": "vse"}],
    "epochs": 1,
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """``expected`` uses ``{tmp}`` for the temporary directory; a trailing ``...``
    means "starts with" (the rest lists things that change, e.g. known names)."""

    id: str
    area: str
    fed: str
    expected: str
    kept: str
    run: Callable[[Path], str]

    def matches(self, message: str, tmp: Path) -> bool:
        want = self.expected.replace("{tmp}", str(tmp))
        if want.endswith("..."):
            return message.startswith(want[:-3])
        return message == want


def cli(*argv: str) -> str:
    """The ``error:`` line of ``retrievalkit argv`` (which must fail as bad input)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
    assert code == USER_ERROR_EXIT and len(lines) == 1, (code, err.getvalue())
    return lines[0]


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def recipe(tmp: Path, text: str | bytes) -> str:
    return cli("train", write(tmp / "r.yaml", text), "--out", tmp / "run", "--no-progress")


def tiny_recipe(tmp: Path, **changes: object) -> str:
    raw = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return recipe(tmp, yaml.safe_dump(raw))


def pairs(tmp: Path, rows: str, *options: str) -> str:
    root = tmp / "images"
    root.mkdir(exist_ok=True)
    write(root / "ok.png", _png())
    listed = write(tmp / "pairs.jsonl", rows)
    return cli(
        "data", "info", "pairs", "--set", f"path={listed}", "--set", f"root={root}", *options
    )


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def service(method: str, path: str, **kwargs: object) -> str:
    """``status loc: msg`` of the service's JSON error (engine faked: never reached)."""
    from fastapi.testclient import TestClient

    from retrievalkit.serve.app import create_app

    class NoModel:
        def search_text(self, queries, k=10, mode="fused"):
            raise AssertionError("a bad request reached the model")

    app = create_app(NoModel(), max_k=20, max_query_chars=100, max_body_bytes=2048,
                     max_url_bytes=1024)  # fmt: skip
    with TestClient(app) as client:
        response = client.request(method, path, **kwargs)
    detail = response.json()["detail"][0]
    loc = ".".join(str(part) for part in detail["loc"])
    return f"{response.status_code} {loc}: {detail['msg']}"


CASES: list[Case] = []


def case(id: str, area: str, fed: str, expected: str, kept: str):
    def register(run: Callable[[Path], str]) -> Callable[[Path], str]:
        CASES.append(Case(id, area, fed, expected, kept, run))
        return run

    return register


# ------------------------------------------------------------------ recipes
@case("yaml-syntax", "recipe", "a recipe with an unclosed `[`",
      "error: {tmp}/r.yaml:3:1: not valid YAML: expected ',' or ']', but got '<stream end>'",
      "nothing started; no run directory")  # fmt: skip
def _(tmp: Path) -> str:
    return recipe(tmp, "name: x\ntask: [cross\n")


@case("yaml-duplicate-key", "recipe", "`lr` given twice under `optim`",
      "error: {tmp}/r.yaml:4:3: not valid YAML: duplicate key 'lr' (first at line 3)",
      "nothing started (PyYAML alone would keep the last value silently)")  # fmt: skip
def _(tmp: Path) -> str:
    return recipe(tmp, "name: x\noptim:\n  lr: 0.1\n  lr: 0.2\n")


@case("recipe-unknown-key", "recipe", "`optim.learning_rate` (no such key)",
      "error: {tmp}/r.yaml: optim: unknown key(s) ['learning_rate']; known: ['betas', ...",
      "nothing started")  # fmt: skip
def _(tmp: Path) -> str:
    return tiny_recipe(tmp, optim={"learning_rate": 0.1})


@case("recipe-wrong-type", "recipe", "`data.batch_size: eight`",
      "error: {tmp}/r.yaml: data.batch_size: expected int, got 'eight'", "nothing started")  # fmt: skip
def _(tmp: Path) -> str:
    return tiny_recipe(tmp, data__batch_size="eight")


@case("recipe-not-utf8", "recipe", "a recipe saved as Latin-1 (`é` = byte 0xE9)",
      "error: {tmp}/r.yaml: not UTF-8 text (invalid continuation byte at byte 9)",
      "nothing started")  # fmt: skip
def _(tmp: Path) -> str:
    return recipe(tmp, "name: caf\xe9 x\n".encode("latin-1"))


@case("recipe-empty", "recipe", "a zero-byte recipe file",
      "error: {tmp}/r.yaml: expected a mapping at the top level", "nothing started")  # fmt: skip
def _(tmp: Path) -> str:
    return recipe(tmp, b"")


@case("recipe-missing", "recipe", "a recipe path that does not exist",
      "error: recipe {tmp}/none.yaml does not exist (not a file, nor a shipped recipe: ...",
      "nothing started")  # fmt: skip
def _(tmp: Path) -> str:
    return cli("train", tmp / "none.yaml", "--out", tmp / "run")


@case("recipe-unknown-loss", "recipe", "`losses: [{name: nosuchloss}]`",
      "error: unknown loss 'nosuchloss'; known: binomial, clip, contrastive, ...", "nothing trained")  # fmt: skip
def _(tmp: Path) -> str:
    return tiny_recipe(tmp, losses=[{"name": "nosuchloss"}])


@case("recipe-bad-loss-option", "recipe", "`losses: [{name: vse, options: {margn: 0.2}}]`",
      "error: cannot build loss 'vse' with {'margn': 0.2}: got an unexpected keyword argument 'margn'",
      "nothing trained")  # fmt: skip
def _(tmp: Path) -> str:
    return tiny_recipe(tmp, losses=[{"name": "vse", "options": {"margn": 0.2}}])


@case("set-unknown-key", "CLI", "`--set optim.nosuch=1`",
      "error: {tmp}/r.yaml: optim: unknown key(s) ['nosuch']; known: ['betas', ...",
      "nothing started")  # fmt: skip
def _(tmp: Path) -> str:
    write(tmp / "r.yaml", yaml.safe_dump(TINY))
    return cli("train", tmp / "r.yaml", "--out", tmp / "run", "--set", "optim.nosuch=1")


# ------------------------------------------------------------ data loaders
@case("missing-image", "data", "a pairs row naming an image that is not there",
      "error: {tmp}/pairs.jsonl:line 1: image file {tmp}/images/gone.png is missing; "
      "expected an existing image file", "nothing loaded (`on_error: skip` drops the row)")  # fmt: skip
def _(tmp: Path) -> str:
    return pairs(tmp, '{"image": "gone.png", "caption": "a red square"}\n')


@case("corrupt-png", "data", "a PNG cut after 20 bytes, with `verify_images`",
      "error: {tmp}/pairs.jsonl:line 1: image file {tmp}/images/cut.png is not readable ...",
      "nothing loaded (`on_error: skip` drops the row)")  # fmt: skip
def _(tmp: Path) -> str:
    write(tmp / "images" / "cut.png", _png()[:20])
    return pairs(tmp, '{"image": "cut.png", "caption": "x"}\n', "--set", "verify_images=true")


@case("zero-byte-jpeg", "data", "a zero-byte `.jpg`, with `verify_images`",
      "error: {tmp}/pairs.jsonl:line 1: image file {tmp}/images/empty.jpg is not readable ...",
      "nothing loaded (`on_error: skip` drops the row)")  # fmt: skip
def _(tmp: Path) -> str:
    write(tmp / "images" / "empty.jpg", b"")
    return pairs(tmp, '{"image": "empty.jpg", "caption": "x"}\n', "--set", "verify_images=true")


@case("empty-caption", "data", "a pairs row with caption `\"  \"`",
      "error: {tmp}/pairs.jsonl:line 1: empty caption '  '; expected a non-empty 'caption'",
      "nothing loaded (`on_error: skip` drops the row)")  # fmt: skip
def _(tmp: Path) -> str:
    return pairs(tmp, '{"image": "ok.png", "caption": "  "}\n')


@case("path-outside-root", "data", "a pairs row naming `../../etc/passwd`",
      "error: {tmp}/pairs.jsonl:line 1: image path '../../etc/passwd' leaves the root; expected "
      "a path inside {tmp}/images",
      "nothing read outside the root")  # fmt: skip
def _(tmp: Path) -> str:
    return pairs(tmp, '{"image": "../../etc/passwd", "caption": "x"}\n')


@case("pairs-not-utf8", "data", "a pairs file in Latin-1",
      "error: {tmp}/pairs.jsonl: unreadable ('utf-8' codec can't decode byte 0xe9 ...",
      "nothing loaded")  # fmt: skip
def _(tmp: Path) -> str:
    return pairs(tmp, b'{"image": "ok.png", "caption": "caf\xe9"}\n')


@case("pairs-bad-json", "data", "a pairs line that is not JSON",
      "error: {tmp}/pairs.jsonl:line 2: malformed JSON: Expecting property name enclosed in double "
      "quotes; expected one JSON object per line", "nothing loaded")  # fmt: skip
def _(tmp: Path) -> str:
    return pairs(tmp, '{"image": "ok.png", "caption": "x"}\n{"image": "ok.png", caption\n')


# ------------------------------------------------------- checkpoints, index
def _trained(tmp: Path) -> Path:
    """A tiny trained run (cached per session directory)."""
    from retrievalkit.run.config import parse_config
    from retrievalkit.training.trainer import Trainer

    run = tmp.parent / "shared_run"
    if not (run / "checkpoints" / "last").exists():
        Trainer(parse_config(TINY), run, progress=False).fit()
    return run


def _index(tmp: Path) -> Path:
    from retrievalkit.search import build_index_dir

    index = tmp.parent / "shared_index"
    if not (index / "retrieval.json").exists():
        build_index_dir(_trained(tmp), index, progress=False)
    return index


@case("truncated-checkpoint", "checkpoint", "`eval` of a run whose best weights lost their tail "
      "(no previous version)",
      "error: no usable checkpoint: {tmp}/run/checkpoints/best/model.safetensors: truncated or "
      "damaged ...", "the damaged file, untouched; training resumes from `last` or `last.prev`")  # fmt: skip
def _(tmp: Path) -> str:
    import shutil

    shutil.copytree(_trained(tmp), tmp / "run")
    weights = tmp / "run" / "checkpoints" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return cli("eval", tmp / "run")


@case("no-run", "CLI", "`eval` of a directory with no run",
      "error: {tmp}: no checkpoint here (expected model.safetensors in it, or in checkpoints/best "
      "or checkpoints/last of a run directory)", "nothing")  # fmt: skip
def _(tmp: Path) -> str:
    return cli("eval", tmp)


@case("no-index", "index", "`search` of a directory that is not an index",
      "error: {tmp}/none: not an index directory (no retrieval.json); make one with "
      "`retrievalkit index build RUN --out DIR`", "nothing")  # fmt: skip
def _(tmp: Path) -> str:
    return cli("search", tmp / "none", "--text", "x")


@case("index-other-model", "index", "an index whose `model/` was replaced by another run's weights",
      "error: {tmp}/index/model/model.safetensors: not the model this index was built with "
      "(sha256 differs from retrieval.json); rebuild it with `retrievalkit index build`",
      "the index files, untouched")  # fmt: skip
def _(tmp: Path) -> str:
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(_index(tmp), tmp / "index")
    weights = tmp / "index" / "model" / "model.safetensors"
    tensors = {k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(weights).items()}
    save_file(tensors, str(weights))
    (tmp / "index" / "model" / "checksums.json").unlink()
    return cli("search", tmp / "index", "--text", "a red circle")


@case("index-wrong-dim", "index", "adding 5-dimensional embeddings to an 8-dimensional index",
      "embeddings must be [n, 8], got (3, 5)", "the index as it was")  # fmt: skip
def _(tmp: Path) -> str:
    import torch

    from retrievalkit.index import ExactIndex
    from retrievalkit.index.base import IndexError_

    try:
        ExactIndex(8).add(torch.randn(3, 5), ["a", "b", "c"])
    except IndexError_ as err:
        return str(err)
    raise AssertionError("accepted")


@case("index-nan", "index", "adding embeddings that hold a NaN",
      "embeddings contain NaN or infinite values", "the index as it was")  # fmt: skip
def _(tmp: Path) -> str:
    import torch

    from retrievalkit.index import ExactIndex
    from retrievalkit.index.base import IndexError_

    vectors = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    vectors[1, 3] = float("nan")
    try:
        ExactIndex(8).add(vectors, ["a", "b"])
    except IndexError_ as err:
        return str(err)
    raise AssertionError("accepted")


@case("query-not-image", "CLI", "`search --image` of a text file named `.png`",
      "error: {tmp}/fake.png: not a readable image (cannot identify image file '{tmp}/fake.png')",
      "nothing searched")  # fmt: skip
def _(tmp: Path) -> str:
    return cli("search", _index(tmp), "--image", write(tmp / "fake.png", "hello"))


@case("empty-text-query", "CLI", "`search --text \"\"`",
      "error: --text: empty query (expected some text)", "nothing searched (it returned hits, exit 0)")  # fmt: skip
def _(tmp: Path) -> str:
    return cli("search", tmp, "--text", "")


@case("queries-not-utf8", "CLI", "`search --queries` of a Latin-1 file",
      "error: {tmp}/q.txt: not UTF-8 text (invalid continuation byte at byte 3); expected one "
      "text query per line", "nothing searched")  # fmt: skip
def _(tmp: Path) -> str:
    return cli(
        "search", tmp, "--queries", write(tmp / "q.txt", "caf\xe9 au lait\n".encode("latin-1"))
    )


# ----------------------------------------------------------------- service
@case("service-long-query", "service", "`GET /search?q=` 101 characters (limit 100)",
      "422 query.q: String should have at most 100 characters", "the model never runs")  # fmt: skip
def _(tmp: Path) -> str:
    return service("GET", "/search", params={"q": "x" * 101})


@case("service-huge-url", "service", "a 5,000-character query string (URL limit 1,024 bytes)",
      "414 url: URL of 5009 bytes; at most 1024 accepted", "nothing parsed")  # fmt: skip
def _(tmp: Path) -> str:
    return service("GET", "/search", params={"q": "x" * 5000})


@case("service-huge-body", "service", "a 1 MB POST body (limit 2,048 bytes)",
      "413 body: body of 1000017 bytes; at most 2048 bytes accepted", "nothing parsed")  # fmt: skip
def _(tmp: Path) -> str:
    body = json.dumps({"queries": ["x" * 1_000_000]})
    return service("POST", "/search", content=body, headers={"content-type": "application/json"})


@case("service-k-range", "service", "`k=500` (max_k 20)",
      "422 query.k: Input should be less than or equal to 20", "the model never runs")  # fmt: skip
def _(tmp: Path) -> str:
    return service("GET", "/search", params={"q": "cat", "k": 500})


@case("service-unknown-field", "service", "`POST /search` with `{\"queries\": [\"a\"], \"top\": 3}`",
      "422 body.top: Extra inputs are not permitted", "the model never runs")  # fmt: skip
def _(tmp: Path) -> str:
    return service("POST", "/search", json={"queries": ["a"], "top": 3})


@case("service-not-json", "service", "`POST /search` with a body that is not JSON",
      "422 body.1: JSON decode error", "the model never runs")  # fmt: skip
def _(tmp: Path) -> str:
    return service(
        "POST", "/search", content=b"{oops", headers={"content-type": "application/json"}
    )


@case("service-blank-query", "service", "`GET /search?q=%20%20%20` (spaces only)",
      "422 query.q: Value error, expected some text, not only spaces", "the model never runs")  # fmt: skip
def _(tmp: Path) -> str:
    return service("GET", "/search", params={"q": "   "})


def markdown_table() -> str:
    """RELIABILITY.md's table of :data:`CASES` (``{tmp}`` = the test's directory)."""
    rows = [
        "| # | where | what was fed | the one line the user sees | what was kept |",
        "|---|---|---|---|---|",
    ]
    for number, c in enumerate(CASES, start=1):
        message = c.expected.replace("|", "\\|")
        rows.append(f"| {number} | {c.area} | {c.fed} | `` {message} `` | {c.kept} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
