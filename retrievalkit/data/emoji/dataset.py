"""The ``emoji`` (image <-> text) and ``emoji_id`` (metric learning) datasets.

One image per (emoji, art style): ``noto`` (the Debian font renders) and the SVG
sets ``twemoji``, ``openmoji``, ``fluent`` (``retrievalkit.data.emoji.styles``).
The CLDR captions of an emoji are shared by all its styles; an image's key is the
emoji (as with one style) and ``image_styles`` holds its style. An emoji is kept
when at least one chosen style draws it.

Splits are by emoji (``split_of``: about 80/10/10 %, all styles of an emoji in
one split). With one style, ``train``/``val``/``test`` are exactly the one-style
splits. With several:

- ``train``: every style of the training emoji (captions repeated per image; the
  training sampler never puts two images of one emoji in a batch).
- ``val`` / ``test``: each emoji once, in one of its styles picked by a hash of
  the emoji (the standard protocol: one right image per caption), and
  ``val_<style>`` / ``test_<style>``: the emoji of that split drawn in that style.

Held-out style (``held_out_style="openmoji"``): ``train`` and ``val`` use the
other styles only; ``test`` is the test emoji in the held-out style (emoji and
artist both unseen); ``test_<style>`` views of every style are kept, so the
same model is scored on seen and unseen styles of the same emoji.

``emoji_id``: class = emoji, instances = its styles (Stanford Online Products'
shape: 2-4 images per class), train/val/test by emoji, so test classes are
unseen; emoji drawn in fewer than 2 chosen styles are left out (no positive).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrievalkit.data.emoji.noto import (
    CLDR_ROOT,
    FONT_PATH,
    captions_for,
    default_cache_dir,
    is_candidate,
    read_annotations,
    render_noto,
    split_of,
)
from retrievalkit.data.emoji.styles import (
    STYLES,
    available_styles,
    default_styles_dir,
    icon_keys,
    render_style_cached,
)
from retrievalkit.data.errors import DataError
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import ArrayImageSource, CrossModalSplit, LabelledSplit
from retrievalkit.data.splits import grouped_captions_split as grouped

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EmojiImages:
    """Every image of the chosen styles.

    Attributes:
        keys: E emoji (CLDR keys); captions: E caption lists.
        pixels: uint8 ``[I, size, size, 3]``; emoji: int64 ``[I]`` index into ``keys``;
        style: I style names; styles: the chosen styles in catalogue order.
        source: where it came from (files, counts).
    """

    keys: list[str]
    captions: list[list[str]]
    pixels: np.ndarray
    emoji: np.ndarray
    style: list[str]
    styles: list[str]
    source: str

    def members(self, emoji: set[int], styles: set[str]) -> list[int]:
        """Image indices of the given emoji in the given styles, in image order."""
        return [
            i
            for i, (e, s) in enumerate(zip(self.emoji, self.style, strict=True))
            if int(e) in emoji and s in styles
        ]


def choose_styles(styles: list[str] | str | None, styles_dir: Path) -> list[str]:
    """The styles to load: ``None`` = every available one (each missing one is logged
    in one line); an explicit list must be loadable (else :class:`DataError`)."""
    found, missing = available_styles(styles_dir, FONT_PATH)
    if styles is None:
        for reason in missing:
            log.warning("emoji style skipped: %s", reason)
        if not found:
            raise DataError(styles_dir, "no emoji style is available", "; ".join(missing))
        return found
    wanted = [styles] if isinstance(styles, str) else list(styles)
    for name in wanted:
        if name not in STYLES:
            raise DataError(f"option styles={wanted}", f"unknown style {name!r}", f"{list(STYLES)}")
        if name not in found:
            reason = next(r for r in missing if r.startswith(f"{name}:"))
            raise DataError(styles_dir, f"style {reason}", "the style's files")
    return [s for s in STYLES if s in wanted]


def _render(
    style: str, keys: list[str], size: int, limit: int | None, cache: Path, styles_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    if style == "noto":
        return render_noto(keys, size, limit, cache)
    return render_style_cached(STYLES[style], keys, size, styles_dir, cache)


def load_emoji_images(
    size: int = 64,
    lang: str = "en",
    skin_tones: bool = False,
    max_keyword_captions: int = 3,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    styles: list[str] | str | None = None,
    styles_dir: str | Path | None = None,
) -> EmojiImages:
    """Render (or read from the cache) every CLDR emoji in every chosen style.

    ``limit`` keeps the first N emoji (CLDR order) drawn in at least one style; with
    Noto chosen, only the prefix of the candidates that holds N Noto renders is tried.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    styles_path = Path(styles_dir) if styles_dir else default_styles_dir()
    chosen = choose_styles(styles, styles_path)
    annotations = [a for a in read_annotations(lang) if is_candidate(a.key, skin_tones)]
    keys = [a.key for a in annotations]
    rendered: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "noto" in chosen:  # with a limit, Noto decides the prefix (it renders in chunks)
        rendered["noto"] = render_noto(keys, size, limit, cache)
        if limit is not None:
            keys = keys[: len(rendered["noto"][1])]
    elif limit is not None:  # the prefix with ``limit`` emoji that have an icon
        have = set().union(*(icon_keys(STYLES[s], styles_path) for s in chosen))
        with_icon = [i for i, k in enumerate(keys) if k in have]
        keys = keys[: with_icon[limit - 1] + 1] if len(with_icon) >= limit else keys
    for style in chosen:
        if style not in rendered:
            rendered[style] = _render(style, keys, size, None, cache, styles_path)
    drawn = np.zeros(len(keys), dtype=bool)
    for _, ok in rendered.values():
        drawn[: len(ok)] |= ok
    kept = np.flatnonzero(drawn)[:limit].tolist()
    index_of = {k: i for i, k in enumerate(kept)}
    pixels, emoji, style_of = [], [], []
    for k in kept:  # emoji-major order: an emoji's styles are neighbours
        for style in chosen:
            images, ok = rendered[style]
            if k < len(ok) and ok[k]:
                pixels.append(images[k])
                emoji.append(index_of[k])
                style_of.append(style)
    counts = {s: style_of.count(s) for s in chosen}
    log.info("emoji: %d emoji, images per style %s", len(kept), counts)
    source = (
        f"{len(keys)} CLDR emoji tried, {len(kept)} kept; rendered per style: "
        f"{', '.join(f'{s} {n}' for s, n in counts.items())} ({size}px; {FONT_PATH}, "
        f"{styles_path}) + {CLDR_ROOT}/annotations{{,Derived}}/{lang}.xml"
    )
    return EmojiImages(
        keys=[keys[k] for k in kept],
        captions=[captions_for(annotations[k], max_keyword_captions) for k in kept],
        pixels=np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8),
        emoji=np.asarray(emoji, dtype=np.int64),
        style=style_of,
        styles=chosen,
        source=source,
    )


def view_style(key: str, styles: list[str]) -> str:
    """One of ``styles`` for an emoji, picked by a hash of its key (stable, ~uniform)."""
    bucket = int(hashlib.sha1(f"view|{key}".encode()).hexdigest()[:8], 16)
    return styles[bucket % len(styles)]


def _cross_modal(data: EmojiImages, name: str, members: list[int]) -> CrossModalSplit:
    return grouped(
        f"emoji/{name}",
        ArrayImageSource(data.pixels[members]),
        [data.keys[data.emoji[i]] for i in members],
        [data.captions[data.emoji[i]] for i in members],
        data.source,
        [data.style[i] for i in members],
    )


def _one_style_each(data: EmojiImages, emoji: set[int], styles: list[str]) -> list[int]:
    """Per emoji, its image in the hash-picked style among those it has in ``styles``."""
    by_emoji: dict[int, dict[str, int]] = {}
    for i in data.members(emoji, set(styles)):
        by_emoji.setdefault(int(data.emoji[i]), {})[data.style[i]] = i
    picked = []
    for e, images in by_emoji.items():
        have = [s for s in styles if s in images]
        picked.append(images[view_style(data.keys[e], have)])
    return sorted(picked)


def emoji_splits(
    data: EmojiImages, held_out_style: str | None = None
) -> dict[str, CrossModalSplit]:
    """The cross-modal splits described in the module docstring."""
    if held_out_style is not None and held_out_style not in data.styles:
        raise DataError(
            f"option held_out_style={held_out_style!r}", "not a loaded style", f"{data.styles}"
        )
    seen = [s for s in data.styles if s != held_out_style]
    if not seen:
        raise DataError(
            f"option held_out_style={held_out_style!r}", "no other style to train on", "2+ styles"
        )
    emoji_of = {
        name: {e for e, k in enumerate(data.keys) if split_of(k) == name} for name in SPLITS
    }
    if len(data.styles) == 1:
        return {n: _cross_modal(data, n, data.members(emoji_of[n], set(seen))) for n in SPLITS}
    splits = {
        "train": _cross_modal(data, "train", data.members(emoji_of["train"], set(seen))),
        "val": _cross_modal(data, "val", _one_style_each(data, emoji_of["val"], seen)),
    }
    test_styles = [held_out_style] if held_out_style else seen
    splits["test"] = _cross_modal(
        data, "test", _one_style_each(data, emoji_of["test"], test_styles)
    )
    for part in ("val", "test"):
        for style in data.styles:
            members = data.members(emoji_of[part], {style})
            splits[f"{part}_{style}"] = _cross_modal(data, f"{part}_{style}", members)
    return splits


def emoji_id_splits(data: EmojiImages) -> dict[str, LabelledSplit]:
    """Metric-learning splits: label = emoji, items = its styles (2+ styles only)."""
    counts = np.bincount(data.emoji, minlength=len(data.keys))
    splits = {}
    for name in SPLITS:
        emoji = {e for e, k in enumerate(data.keys) if split_of(k) == name and counts[e] >= 2}
        members = data.members(emoji, set(data.styles))
        splits[name] = LabelledSplit(
            name=f"emoji_id/{name}",
            images=ArrayImageSource(data.pixels[members]),
            labels=data.emoji[members].astype(np.int64),
            keys=[data.keys[data.emoji[i]] for i in members],
            class_names=[data.captions[e][0] for e in range(len(data.keys))],
            source=data.source,
            image_styles=[data.style[i] for i in members],
        )
    return splits


@register_dataset("emoji")
def load_emoji(
    size: int = 64,
    lang: str = "en",
    skin_tones: bool = False,
    max_keyword_captions: int = 3,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    styles: list[str] | str | None = None,
    styles_dir: str | Path | None = None,
    held_out_style: str | None = None,
) -> dict[str, CrossModalSplit]:
    """Emoji image <-> text splits (see the module docstring).

    ``styles``: None = every available style, or a list such as ``[noto]``;
    ``held_out_style``: a loaded style kept out of ``train``/``val`` and used as ``test``.
    ``lang``: CLDR language of the captions (the split of an emoji does not depend on it).
    """
    data = load_emoji_images(
        size, lang, skin_tones, max_keyword_captions, limit, cache_dir, styles, styles_dir
    )
    return emoji_splits(data, held_out_style)


@register_dataset("emoji_id")
def load_emoji_id(
    size: int = 64,
    skin_tones: bool = False,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    styles: list[str] | str | None = None,
    styles_dir: str | Path | None = None,
) -> dict[str, LabelledSplit]:
    """Emoji identity across art styles (metric learning; unseen emoji at test)."""
    data = load_emoji_images(size, "en", skin_tones, 3, limit, cache_dir, styles, styles_dir)
    return emoji_id_splits(data)
