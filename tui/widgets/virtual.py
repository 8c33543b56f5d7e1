"""Setting a Line-API widget's virtual size without a screen layout.

``Widget.virtual_size`` is a reactive with ``layout=True``: assigning it lays out the whole screen (tens of
milliseconds on the grid screen), although a scroll view whose scrollbars stay as they are only needs its scroll
range and a repaint. :func:`set_virtual_size` updates the size and the scrollbars quietly; Textual still lays out
the screen when a scrollbar appears or disappears (its ``show_*_scrollbar`` reactives do that themselves).
"""

from __future__ import annotations

from textual.geometry import Size
from textual.widget import Widget


def set_virtual_size(widget: Widget, size: Size) -> None:
    if widget.virtual_size == size:
        return
    if not widget.is_mounted or not widget.size:
        widget.virtual_size = size
        return
    widget.set_reactive(Widget.virtual_size, size)
    widget._scroll_update(size)  # scroll range + scrollbar visibility (a layout only if that changes)
    widget.refresh()
