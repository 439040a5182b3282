"""Deep merge of documents: mappings merge key by key, anything else is replaced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from framework.config.sources import Document
from framework.config.tree import KeyPath, Origin

__all__ = ["deep_merge", "merge_documents"]


def deep_merge(base: Any, overlay: Any) -> Any:
    """``overlay`` over ``base``; returns new containers along merged paths.

    Two mappings merge recursively; in every other case (lists included) the overlay wins
    whole, which is what a later file that restates a list means.
    """
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return overlay


def merge_documents(docs: Sequence[Document]) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Merge in order (later wins); origins follow the same rule.

    A path present in the result was defined last by the last document that defines it, so
    updating the origins in document order is exact for every surviving path; stale entries
    of replaced subtrees are dropped later by :func:`framework.config.tree.prune`.
    """
    data: dict[str, Any] = {}
    origins: dict[KeyPath, Origin] = {}
    for doc in docs:
        data = deep_merge(data, doc.data)
        origins.update(doc.origins)
    return data, origins
