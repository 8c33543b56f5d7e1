"""Colours for experts and POS tags. Colours are an aid only: ids are always written in cells and a legend exists."""

from __future__ import annotations

import colorsys
from functools import lru_cache

from rich.color import Color
from rich.style import Style

# 17 UD tags: hand-picked, distinct in 256 colours.
_POS_RGB = {
    "ADJ": (230, 159, 0), "ADP": (86, 180, 233), "ADV": (0, 158, 115), "AUX": (240, 228, 66),
    "CCONJ": (0, 114, 178), "DET": (213, 94, 0), "INTJ": (204, 121, 167), "NOUN": (220, 60, 60),
    "NUM": (150, 150, 255), "PART": (170, 170, 170), "PRON": (120, 200, 120), "PROPN": (255, 120, 120),
    "PUNCT": (110, 110, 110), "SCONJ": (180, 140, 90), "SYM": (140, 90, 180), "VERB": (60, 170, 250), "X": (90, 90, 90),
}


def _fg_for(r: int, g: int, b: int) -> Color:
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return Color.from_rgb(0, 0, 0) if lum > 140 else Color.from_rgb(255, 255, 255)


@lru_cache(maxsize=4096)
def expert_rgb(expert: int, n_experts: int) -> tuple[int, int, int]:
    # golden-ratio hue walk so neighbouring ids differ; two lightness bands double the distinct colours
    h = (expert * 0.618033988749895) % 1.0
    light = 0.45 if expert % 2 else 0.62
    r, g, b = colorsys.hls_to_rgb(h, light, 0.75)
    return int(r * 255), int(g * 255), int(b * 255)


@lru_cache(maxsize=4096)
def expert_style(expert: int, n_experts: int) -> Style:
    r, g, b = expert_rgb(expert, n_experts)
    return Style(bgcolor=Color.from_rgb(r, g, b), color=_fg_for(r, g, b))


@lru_cache(maxsize=64)
def pos_style(tag: str) -> Style:
    if not tag:
        return Style(dim=True)
    r, g, b = _POS_RGB.get(tag, (128, 128, 128))
    return Style(bgcolor=Color.from_rgb(r, g, b), color=_fg_for(r, g, b))


@lru_cache(maxsize=64)
def pos_fg(tag: str) -> Style:
    if not tag:
        return Style(dim=True)
    r, g, b = _POS_RGB.get(tag, (160, 160, 160))
    return Style(color=Color.from_rgb(r, g, b), bold=True)
