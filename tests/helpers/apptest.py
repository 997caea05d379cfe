"""Reading an AppTest's page as a student would."""

from __future__ import annotations

TEXT_KINDS = ("markdown", "caption", "info", "success", "warning", "error", "header")


def page_text(at) -> str:
    """Every text the page shows (markdown, captions, alerts, headers), one element per line."""
    return "\n".join(str(element.value) for kind in TEXT_KINDS for element in getattr(at, kind))
