"""Splits Markdown or plain text into retrieval chunks along headings, then paragraphs."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str
    title: str
    index: int
    page: int | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading path, body) pairs; the body keeps its own heading line for retrieval context."""
    sections: list[tuple[str, list[str]]] = []
    path: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            if any(part.strip() for part in current):
                sections.append((" > ".join(path), current))
            level = len(heading.group(1))
            path = [*path[: level - 1], heading.group(2)]
            current = [line]
        else:
            current.append(line)
    if any(part.strip() for part in current):
        sections.append((" > ".join(path), current))
    return [(title, "\n".join(lines).strip()) for title, lines in sections]


def _split_long(body: str, max_chars: int) -> list[str]:
    if len(body) <= max_chars:
        return [body]
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", body):
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if current and len(candidate) > max_chars:
            pieces.append(current)
            current = paragraph
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def chunk_document(text: str, source: str, max_chars: int = 1500) -> list[Chunk]:
    """Deterministic chunks: the same file always yields the same ids, so re-ingesting replaces."""
    chunks: list[Chunk] = []
    for title, body in _sections(text):
        for piece in _split_long(body, max_chars):
            if any(line.strip() and not _HEADING.match(line) for line in piece.splitlines()):
                index = len(chunks)
                chunks.append(Chunk(id=f"{source}::{index:04d}", text=piece, source=source, title=title, index=index))
    return chunks


def chunk_pages(pages: list[str], source: str, max_chars: int = 1500) -> list[Chunk]:
    """Chunks of a paged document (a PDF): paragraphs within each page, so every chunk has one page."""
    chunks: list[Chunk] = []
    for number, text in enumerate(pages, start=1):
        body = "\n\n".join(block.strip() for block in re.split(r"\n\s*\n", text) if block.strip())
        if not body:
            continue
        for paragraphs in _split_long(body, max_chars):
            for piece in _split_lines(paragraphs, max_chars):
                index = len(chunks)
                chunks.append(Chunk(f"{source}::{index:04d}", piece, source, "", index, page=number))
    return chunks


def _split_lines(text: str, max_chars: int) -> list[str]:
    """PDF text often has no blank lines at all: a piece still too long is cut between lines."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > max_chars:  # one enormous line: cut it (rare; keeps the bound)
            pieces.extend([current] if current else [])
            current = ""
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        if current and len(current) + 1 + len(line) > max_chars:
            pieces.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current.strip():
        pieces.append(current)
    return [piece for piece in pieces if piece.strip()]
