"""What the ingester reads: Markdown/text, PDF (pypdf, pure Python) and JSON chunk exports.

Each reader turns one file into a ``Book``: its chunks, in a stable order with stable ids, so
re-reading an unchanged file yields the same ids and hashes (what lets a re-run add nothing).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnd_rag.logic.retrieval.chunk_metadata import first_text, page, section
from dnd_rag.logic.retrieval.chunking import Chunk, chunk_document, chunk_pages
from dnd_rag.settings import DEFAULT_PAGE_KEYS, DEFAULT_SOURCE_KEYS, DEFAULT_TITLE_KEYS

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
PDF_SUFFIXES = (".pdf",)
JSON_SUFFIXES = (".json", ".jsonl")
SUFFIXES = TEXT_SUFFIXES + PDF_SUFFIXES + JSON_SUFFIXES
TEXT_KEYS = ("text", "page_content", "content", "document", "chunk")


@dataclass(frozen=True)
class Book:
    """One file's chunks."""

    path: Path
    chunks: list[Chunk]


def read(path: Path) -> Book:
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return Book(path, chunk_pages(_pdf_pages(path), path.name))
    if suffix in JSON_SUFFIXES:
        return Book(path, _json_chunks(path))
    return Book(path, chunk_document(path.read_text(encoding="utf-8"), path.name))


def collection_name(path: Path) -> str:
    """A Chroma collection name from a file name: ``Monster Manual.pdf`` -> ``monster_manual``."""
    name = re.sub(r"[^a-z0-9._-]+", "_", path.stem.lower()).strip("._-")[:500]
    return name if len(name) >= 3 else f"{name or 'book'}_book"


def _pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader  # only the ingester needs it (not the Lambda layer)

    return [page.extract_text() or "" for page in PdfReader(path).pages]


def _json_chunks(path: Path) -> list[Chunk]:
    """Chunks another pipeline exported: a JSON list of objects, JSON Lines, or Chroma's
    ``{"ids", "documents", "metadatas"}``. Each object has its text under one of ``TEXT_KEYS``
    and, optionally, ``id`` and ``metadata`` (source, title/section, page)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    else:
        data = json.loads(raw)
        if isinstance(data, dict) and "documents" in data:
            ids = data.get("ids") or [None] * len(data["documents"])
            metadatas = data.get("metadatas") or [{}] * len(data["documents"])
            records = [
                {"id": i, "text": d, "metadata": m or {}}
                for i, d, m in zip(ids, data["documents"], metadatas, strict=True)
            ]
        elif isinstance(data, dict) and isinstance(data.get("chunks"), list):
            records = data["chunks"]
        else:
            records = data if isinstance(data, list) else [data]
    chunks: list[Chunk] = []
    for record in records:
        chunk = _record_chunk(record, path.name, len(chunks))
        if chunk is not None:
            chunks.append(chunk)
    return chunks


def _record_chunk(record: Any, file_name: str, index: int) -> Chunk | None:
    if not isinstance(record, dict):
        raise SystemExit(f"ingest: {file_name}: chunk {index} is not an object")
    text = next((record[key] for key in TEXT_KEYS if isinstance(record.get(key), str)), "")
    if not text.strip():
        return None
    fields = {key: value for key, value in record.items() if key not in (*TEXT_KEYS, "metadata")}
    metadata = {**fields, **(record.get("metadata") or {})}
    source = first_text(metadata, DEFAULT_SOURCE_KEYS) or file_name
    title = section(metadata, DEFAULT_TITLE_KEYS)
    page_no = page(metadata, DEFAULT_PAGE_KEYS)
    chunk_id = str(record.get("id") or f"{file_name}::{index:04d}")
    return Chunk(chunk_id, text, source, title, index, page=page_no)
