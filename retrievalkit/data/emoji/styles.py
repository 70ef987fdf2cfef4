"""Emoji art styles: the Noto font renders plus three SVG sets from the npm registry.

The SVG sets are Iconify JSON packages, fetched at set-up time by ``make
data-packages`` (``npm pack``, pinned versions) into ``cache/emoji-styles/<set>/``
(``icons.json``, ``chars.json``, ``info.json``, ``VERSION``); nothing is
downloaded at run time. ``icons.json`` holds SVG bodies (``body``, optional
``left/top/width/height``, defaults at the top level) and aliases (``parent`` plus
``hFlip/vFlip/rotate``); ``chars.json`` maps code points (lower-case hex joined by
``-``) to icon names.

Rendering (``cairosvg``, the system's libcairo): each icon is drawn at
``max(2 * size, 128)`` pixels, cropped to a centred square around its drawn
pixels, composited on white and resized to ``size`` (LANCZOS), as the Noto renders
are, so the styles' different paddings do not matter. Rendered pixels are cached
as ``.npz`` next to the Noto cache, keyed by set, version, size and keys.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrievalkit.data.emoji.render_cache import load_or_render
from retrievalkit.data.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SOURCE_TREE = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class EmojiStyle:
    """One art style: where it comes from and under which licence."""

    name: str
    package: str  # Debian or npm package
    version: str  # pinned npm version ("" for the Debian font: apt decides)
    licence: str
    attribution: str

    @property
    def is_svg(self) -> bool:
        return self.package.startswith("@iconify-json/")

    @property
    def directory_name(self) -> str:
        return self.package.rpartition("/")[2]


STYLES: dict[str, EmojiStyle] = {
    style.name: style
    for style in (
        EmojiStyle(
            "noto",
            "fonts-noto-color-emoji",
            "",
            "SIL Open Font License 1.1",
            "Noto Color Emoji, Google (Debian package fonts-noto-color-emoji)",
        ),
        EmojiStyle(
            "twemoji",
            "@iconify-json/twemoji",
            "1.2.5",
            "CC BY 4.0",
            "Twemoji by Twitter, Inc and other contributors, "
            "https://github.com/jdecked/twemoji (via Iconify)",
        ),
        EmojiStyle(
            "openmoji",
            "@iconify-json/openmoji",
            "1.2.29",
            "CC BY-SA 4.0",
            "OpenMoji, the open-source emoji and icon project, HfG Schwäbisch Gmünd, "
            "https://openmoji.org (via Iconify)",
        ),
        EmojiStyle(
            "fluent",
            "@iconify-json/fluent-emoji-flat",
            "1.2.6",
            "MIT",
            "Fluent Emoji (flat), Copyright (c) Microsoft Corporation, "
            "https://github.com/microsoft/fluentui-emoji (via Iconify)",
        ),
    )
}


def default_styles_dir() -> Path:
    """``$RETRIEVALKIT_EMOJI_STYLES``, else ``cache/emoji-styles`` in the working
    directory when it exists, else in the source tree (where ``make`` puts it)."""
    if os.environ.get("RETRIEVALKIT_EMOJI_STYLES"):
        return Path(os.environ["RETRIEVALKIT_EMOJI_STYLES"])
    local = Path("cache/emoji-styles")
    return local if local.is_dir() else SOURCE_TREE / "cache" / "emoji-styles"


def style_directory(style: EmojiStyle, styles_dir: Path) -> Path:
    return styles_dir / style.directory_name


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            path, "file not found", f"{what} (fetch the sets with `make data-packages`)"
        ) from None
    except (OSError, ValueError) as err:
        raise DataError(path, f"unreadable JSON ({err})", what) from None
    if not isinstance(data, dict):
        raise DataError(path, f"a JSON {type(data).__name__}", f"a JSON object ({what})")
    return data


def chars_to_key(code_points: str) -> str:
    """``"2764-fe0f"`` -> ``"❤"``: chars.json's hex code points as a CLDR key (no FE0F)."""
    return "".join(chr(int(cp, 16)) for cp in code_points.split("-") if cp != "fe0f")


def _resolve(name: str, icons: dict, aliases: dict, path: Path) -> dict:
    """An icon record with its alias chain applied (flips xor-ed, rotations added)."""
    flips = {"hFlip": False, "vFlip": False}
    rotate, seen, record = 0, set(), {}
    while name in aliases:
        if name in seen:
            raise DataError(path, f"alias loop at {name!r}", "aliases ending in an icon")
        seen.add(name)
        alias = aliases[name]
        for flip in flips:
            flips[flip] ^= bool(alias.get(flip, False))
        rotate += int(alias.get("rotate", 0))
        dims = {k: v for k, v in alias.items() if k in ("width", "height", "left", "top")}
        record = dims | record  # the alias nearest the name wins
        name = alias.get("parent", "")
    if name not in icons or "body" not in icons[name]:
        raise DataError(path, f"icon {name!r} has no body", "an icon with an SVG 'body'")
    base = icons[name]
    for flip in flips:
        flips[flip] ^= bool(base.get(flip, False))
    rotate += int(base.get("rotate", 0))
    return {**base, **record, **flips, "rotate": rotate % 4}


def icon_svg(icon: dict, defaults: dict) -> str:
    """A standalone SVG document of one resolved icon (its view box; any output size)."""
    left, top = icon.get("left", defaults.get("left", 0)), icon.get("top", defaults.get("top", 0))
    width = icon.get("width", defaults.get("width", 16))
    height = icon.get("height", defaults.get("height", 16))
    transforms = []
    if icon.get("hFlip"):
        transforms.append(f"translate({width + 2 * left} 0) scale(-1 1)")
    if icon.get("vFlip"):
        transforms.append(f"translate(0 {height + 2 * top}) scale(1 -1)")
    if icon.get("rotate"):
        transforms.append(f"rotate({90 * icon['rotate']} {left + width / 2} {top + height / 2})")
    body = icon["body"]
    if transforms:
        body = f'<g transform="{" ".join(reversed(transforms))}">{body}</g>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="{left} {top} {width} {height}">{body}</svg>'
    )


def read_icon_set(directory: Path) -> dict[str, str]:
    """``{CLDR key: SVG document}`` of an Iconify set directory (icons.json + chars.json).

    A key listed twice (with and without FE0F) keeps its first icon.
    """
    icons_path = directory / "icons.json"
    data = _read_json(icons_path, "an Iconify icons.json")
    chars = _read_json(directory / "chars.json", "an Iconify chars.json")
    icons, aliases = data.get("icons"), data.get("aliases", {})
    if not isinstance(icons, dict):
        raise DataError(icons_path, "no 'icons' object", "Iconify JSON with an 'icons' object")
    defaults = {k: data[k] for k in ("left", "top", "width", "height") if k in data}
    out: dict[str, str] = {}
    for code_points, name in chars.items():
        try:
            key = chars_to_key(code_points)
        except ValueError:
            raise DataError(
                directory / "chars.json", f"key {code_points!r}", "hex code points joined by '-'"
            ) from None
        if key not in out:
            out[key] = icon_svg(_resolve(name, icons, aliases, icons_path), defaults)
    return out


def icon_keys(style: EmojiStyle, styles_dir: Path) -> set[str]:
    """The CLDR keys an SVG style has an icon for."""
    return set(read_icon_set(style_directory(style, styles_dir)))


def _svg_to_layer(svg: str, pixels: int) -> object:
    import cairosvg
    from PIL import Image

    png = cairosvg.svg2png(
        bytestring=svg.encode("utf-8"), output_width=pixels, output_height=pixels
    )
    return Image.open(io.BytesIO(png)).convert("RGBA")


def render_icons(svgs: list[str | None], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render SVG documents (None = no icon) -> uint8 ``[N, size, size, 3]`` on white
    and ``ok [N]`` (False: no icon, or nothing drawn)."""
    from retrievalkit.data.emoji.noto import to_square

    pixels = max(2 * size, 128)
    out = np.full((len(svgs), size, size, 3), 255, dtype=np.uint8)
    ok = np.zeros(len(svgs), dtype=bool)
    for i, svg in enumerate(svgs):
        if svg is None:
            continue
        layer = _svg_to_layer(svg, pixels)
        if layer.getbbox() is None:
            continue
        out[i] = to_square(layer, size)
        ok[i] = True
    return out, ok


def render_style_cached(
    style: EmojiStyle, keys: list[str], size: int, styles_dir: Path, cache_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``keys`` in an SVG ``style``: uint8 ``[N, size, size, 3]``, ``ok [N]``.

    Cached in ``cache_dir`` by set directory (its VERSION and icons.json size),
    size and keys; written atomically.
    """
    directory = style_directory(style, styles_dir)
    icons = read_icon_set(directory)
    version = (
        (directory / "VERSION").read_text().strip() if (directory / "VERSION").exists() else ""
    )
    stat = (directory / "icons.json").stat()
    digest = hashlib.sha1(
        f"{CACHE_VERSION}|{style.name}|{version}|{stat.st_size}|{size}|{'|'.join(keys)}".encode()
    ).hexdigest()[:16]
    path = cache_dir / f"emoji-{style.name}-{size}px-{digest}.npz"

    def render_now() -> tuple[np.ndarray, np.ndarray]:
        log.info("emoji: rendering %s (%d candidates)", style.name, len(keys))
        return render_icons([icons.get(key) for key in keys], size)

    return load_or_render(path, render_now)


def available_styles(styles_dir: Path, font_path: Path) -> tuple[list[str], list[str]]:
    """(styles that can be loaded, one-line reasons for the others), in STYLES order."""
    found, missing = [], []
    try:
        import cairosvg  # noqa: F401

        have_cairo = True
    except (ImportError, OSError):
        have_cairo = False
    for style in STYLES.values():
        if not style.is_svg:
            if font_path.exists():
                found.append(style.name)
            else:
                missing.append(f"{style.name}: {font_path} not found ({style.package})")
        elif not (style_directory(style, styles_dir) / "icons.json").exists():
            missing.append(
                f"{style.name}: {style_directory(style, styles_dir)} not found "
                f"(npm {style.package}@{style.version}; `make data-packages` fetches it)"
            )
        elif not have_cairo:
            missing.append(f"{style.name}: cairosvg not installed (pip extra 'emoji')")
        else:
            found.append(style.name)
    return found, missing
