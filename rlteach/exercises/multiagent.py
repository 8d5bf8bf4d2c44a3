"""Checkers for the exercises of the multiagent chapters (filled in by the chapter work)."""

from __future__ import annotations

__all__: list[str] = []
