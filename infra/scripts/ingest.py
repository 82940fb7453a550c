"""Ingest Markdown/text files into the Chroma collection the API reads.

    python -m infra.scripts.ingest infra/corpus            # a folder (*.md, *.txt) or files
    python -m infra.scripts.ingest --if-empty infra/corpus  # only when the collection is missing/empty

Idempotent: chunk ids are derived from the file name and position, so re-ingesting a file
replaces its chunks and removes the ones it no longer has. Configuration comes from the same
environment variables as the API (CHROMA_*, EMBEDDING_PROVIDER, EMBEDDING_MODEL, OPENAI_*).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dnd_rag.container import Container
from dnd_rag.logic.chunking import chunk_document
from dnd_rag.providers.chroma_store import EMBEDDING_MODEL_KEY, open_for_writing
from dnd_rag.settings import load_settings

BATCH = 64


def document_paths(targets: list[Path]) -> list[Path]:
    paths: list[Path] = []
    for target in targets:
        if target.is_dir():
            paths.extend(sorted(p for p in target.rglob("*") if p.suffix.lower() in (".md", ".txt")))
        elif target.is_file():
            paths.append(target)
        else:
            raise SystemExit(f"ingest: {target} does not exist")
    return paths


def needs_ingest(container: Container) -> bool:
    """True when the collection is missing, empty, or built with another embedding model."""
    client = container.chroma_client()
    name = container.settings.chroma_collection
    existing = {collection.name: collection for collection in client.list_collections()}
    if name not in existing:
        return True
    collection = client.get_collection(name, embedding_function=None)
    built_with = (collection.metadata or {}).get(EMBEDDING_MODEL_KEY)
    return collection.count() == 0 or built_with != container.embedder.model


def ingest(container: Container, paths: list[Path]) -> dict[str, int]:
    """Upsert every file's chunks; return chunk counts per source."""
    embedder = container.embedder
    collection = open_for_writing(container.chroma_client(), container.settings.chroma_collection, embedder.model)
    counts: dict[str, int] = {}
    for path in paths:
        source = path.name
        chunks = chunk_document(path.read_text(encoding="utf-8"), source)
        for start in range(0, len(chunks), BATCH):
            batch = chunks[start : start + BATCH]
            vectors = embedder.embed([chunk.text for chunk in batch], container.settings.openai_timeout_seconds).vectors
            collection.upsert(
                ids=[chunk.id for chunk in batch],
                embeddings=vectors,  # type: ignore[arg-type]
                documents=[chunk.text for chunk in batch],
                metadatas=[
                    {
                        "source": chunk.source,
                        "title": chunk.title,
                        "chunk": chunk.index,
                        "content_hash": chunk.content_hash,
                    }
                    for chunk in batch
                ],
            )
        current = {chunk.id for chunk in chunks}
        stale = [i for i in collection.get(where={"source": source}, include=[])["ids"] if i not in current]
        if stale:
            collection.delete(ids=stale)
        counts[source] = len(chunks)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--if-empty", action="store_true", help="skip when the collection already has data")
    args = parser.parse_args(argv)
    container = Container(load_settings())
    if args.if_empty and not needs_ingest(container):
        print(f"ingest: collection {container.settings.chroma_collection!r} is ready; nothing to do")
        return 0
    counts = ingest(container, document_paths(args.paths))
    total = sum(counts.values())
    print(
        f"ingest: {total} chunks from {len(counts)} files into {container.settings.chroma_collection!r} "
        f"({container.embedder.model})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
