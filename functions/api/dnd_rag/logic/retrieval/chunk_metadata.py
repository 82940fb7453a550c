"""Reading a chunk's file, section and page from the metadata other pipelines write.

Keys differ by pipeline (LangChain: ``source``/``page``; LlamaIndex: ``file_name``/``page_label``;
Docling: a ``dl_meta`` object, often stored as a JSON string because Chroma metadata is flat, with
``headings`` and ``doc_items[].prov[].page_no``), so each field is the first of a list of keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DOCLING_KEY = "dl_meta"


def first_text(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = metadata.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, list):  # a heading path stored as a list
            return " > ".join(str(part) for part in value)
        return str(value)
    return ""


def page_number(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        page = _whole(metadata.get(key))
        if page is not None:
            return page
    return None


def section(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return first_text(metadata, keys) or " > ".join(str(h) for h in _docling(metadata).get("headings") or [])


def page(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    found = page_number(metadata, keys)
    if found is not None:
        return found
    items = [item for item in _docling(metadata).get("doc_items") or [] if isinstance(item, dict)]
    for item in items:
        for provenance in item.get("prov") or []:
            found = _whole(provenance.get("page_no")) if isinstance(provenance, dict) else None
            if found is not None:
                return found
    return None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value >= 0 and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _docling(metadata: Mapping[str, Any]) -> dict[str, Any]:
    value = metadata.get(DOCLING_KEY)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}
