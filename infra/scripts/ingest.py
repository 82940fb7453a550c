"""Ingest books into the Chroma collections the API reads: Markdown/text, PDF, JSON chunk exports.

    python -m infra.scripts.ingest my_book.md                # its own collection: my_book
    python -m infra.scripts.ingest "Monster Manual.pdf"      # its own collection: monster_manual
    python -m infra.scripts.ingest --collection mm a.md b.pdf  # everything into one named collection
    python -m infra.scripts.ingest infra/corpus              # the sample corpus: CHROMA_COLLECTION (dnd_rules)
    python -m infra.scripts.ingest --if-empty infra/corpus   # only when the collection is missing/empty
    python -m infra.scripts.ingest --stamp-only              # a new corpus version, nothing embedded

Where chunks go: every file gets a collection of its own, named after the file (``My Book.md`` ->
``my_book``), whatever its kind; ``--collection`` puts them all into one. Only the sample corpus
(``infra/corpus``) goes to CHROMA_COLLECTION, so your documents never land silently in it. The
API serves CHROMA_COLLECTIONS=a,b,c (read when ``make dev`` starts): after ingesting into a
collection it does not serve yet, the ingester prints the exact line to restart it with.

Re-runs add nothing and pay for nothing: chunk ids come from the file and position and each chunk
records its content hash, so only new or changed chunks are embedded (an interrupted run resumes
where it stopped), and chunks a file no longer has are removed. With OpenAI embeddings the tokens
and dollars to be spent are printed first, and nothing is embedded without ``--yes`` (or a "y" at
the prompt). Configuration comes from the same environment variables as the API (CHROMA_*,
EMBEDDING_PROVIDER, EMBEDDING_MODEL, OPENAI_*, TABLE_NAME), over ``.env`` and the local stack's defaults.

With OpenAI embeddings every call is put on the books of its UTC day (the spend export's
``(corpus ingest)`` row, beside the query budget: dal/money/ingest_books.py), so the nightly
reconciliation with OpenAI's records finds it there.

Every successful run stamps a new corpus version on each collection it wrote to (an item in the
API's DynamoDB table): answers cached before it are not served again. ``--stamp-only`` stamps
without ingesting (the served collections, or ``--collection``), for corpora built by another
pipeline. The table is ``make dev``'s, in its local emulator (LOCAL_AWS_PORT), unless
``--allow-aws`` says to stamp a deployed stack's (AWS_PROFILE or keys, AWS_DEFAULT_REGION,
TABLE_NAME); without the flag nothing reaches AWS (infra/local/aws_guard.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import httpx

from dnd_rag.container import Container
from dnd_rag.errors import ServiceError, UpstreamError
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.retrieval.chunking import Chunk
from dnd_rag.pricing import PriceBook, TokenUsage, nanos_to_usd
from dnd_rag.providers.chroma_store import EMBEDDING_MODEL_KEY, ForeignCollectionError, open_for_writing
from dnd_rag.providers.tokenizer import count_text_tokens
from dnd_rag.settings import load_settings
from infra.local.aws_guard import (
    ENDPOINT,
    LOCAL_CREDENTIALS,
    PROFILE_VARIABLES,
    RealAwsError,
    is_local_url,
    use_local_aws,
)
from infra.local.stack import configured_environment, local_environment
from infra.local.template import REPO_ROOT
from infra.scripts.readers import SUFFIXES, Book, collection_name, read

BATCH = 64
SAMPLE_CORPUS = (REPO_ROOT / "infra" / "corpus").resolve()  # what make dev serves as CHROMA_COLLECTION
LOOKUP_BATCH = 500
# OpenAI's embedding models use the cl100k_base encoding, which is gpt-4's.
EMBEDDING_TOKENIZER = "gpt-4"


def document_paths(targets: list[Path]) -> list[Path]:
    paths: list[Path] = []
    for target in targets:
        if target.is_dir():
            paths.extend(sorted(p for p in target.rglob("*") if p.suffix.lower() in SUFFIXES))
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


@dataclass
class Target:
    """One collection's work: its books, the chunks still to embed, the ones to delete."""

    name: str
    books: list[Book] = field(default_factory=list)
    pending: list[Chunk] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    collection: Any = None


def default_collection(path: Path, sample_collection: str) -> str:
    """A file's own collection, named after it; the sample corpus's files go to ``sample_collection``."""
    if path.resolve().is_relative_to(SAMPLE_CORPUS):
        return sample_collection
    return collection_name(path)


def prepare(container: Container, paths: list[Path], collection: str | None = None) -> list[Target]:
    """Read every file and find, per collection, what is new or changed (nothing is embedded yet)."""
    targets: dict[str, Target] = {}
    for path in paths:
        book = read(path)
        name = collection or default_collection(path, container.settings.chroma_collection)
        targets.setdefault(name, Target(name)).books.append(book)
    client = container.chroma_client()
    for target in targets.values():
        try:
            target.collection = open_for_writing(client, target.name, container.embedder.model)
        except ForeignCollectionError as exc:
            raise SystemExit(f"ingest: {exc}") from None
        for book in target.books:
            stored = _stored_hashes(target.collection, [chunk.id for chunk in book.chunks])
            target.pending.extend(c for c in book.chunks if stored.get(c.id) != c.content_hash)
            current = {chunk.id for chunk in book.chunks}
            target.stale.extend(i for i in _ids_of_file(target.collection, book.path.name) if i not in current)
    return list(targets.values())


def estimate(targets: list[Target], prices: PriceBook) -> tuple[int, int, Decimal]:
    """(chunks, tokens, dollars) that embedding the pending chunks costs with OpenAI."""
    chunks = [chunk for target in targets for chunk in target.pending]
    tokens = sum(count_text_tokens(EMBEDDING_TOKENIZER, chunk.text) for chunk in chunks)
    return len(chunks), tokens, nanos_to_usd(prices.cost_nanos(TokenUsage(embedding_tokens=tokens)))


def run(container: Container, targets: list[Target], out: TextIO | None = None) -> None:
    """Embed and upsert the pending chunks batch by batch (each batch is durable: a re-run resumes)."""
    embedder = container.embedder
    progress = Progress(sum(len(target.pending) for target in targets), out or sys.stderr)
    for target in targets:
        for start in range(0, len(target.pending), BATCH):
            batch = target.pending[start : start + BATCH]
            embedding = embedder.embed([chunk.text for chunk in batch], container.settings.openai_timeout_seconds)
            book_embedding(container, embedding.tokens)
            vectors = embedding.vectors
            target.collection.upsert(
                ids=[chunk.id for chunk in batch],
                embeddings=vectors,
                documents=[chunk.text for chunk in batch],
                metadatas=[_metadata(chunk, book_file(target, chunk)) for chunk in batch],
            )
            progress.advance(len(batch), target.name)
        if target.stale:
            target.collection.delete(ids=target.stale)
    progress.done()


def book_embedding(container: Container, tokens: int) -> None:
    """Put one paid embeddings call on the books of its UTC day (the spend export's ``(corpus ingest)``
    line; the reconciliation compares it with OpenAI's records), beside the query budget. The offline
    embedder costs nothing and is not booked."""
    settings = container.settings
    if settings.embedding_provider != "openai":
        return
    cost = settings.price_book.cost_nanos(TokenUsage(embedding_tokens=tokens))
    day = utc_day(container.clock())  # the local stack's clock under LOCAL_CLOCK_START, as the API's
    container.ingest_books.record(day, uuid.uuid4().hex, settings.embedding_model, tokens, cost)


def ingest(
    container: Container, paths: list[Path], collection: str | None = None, stamp_versions: bool = True
) -> dict[str, int]:
    """Ingest without asking (tests, ``make dev``) and stamp new corpus versions (unless
    ``stamp_versions`` is False: a throwaway corpus no API serves); return the chunk count of every file."""
    targets = prepare(container, paths, collection)
    run(container, targets, out=_Quiet())
    if stamp_versions:
        stamp(container, [target.name for target in targets])
    return {book.path.name: len(book.chunks) for target in targets for book in target.books}


def stamp(container: Container, collections: list[str]) -> dict[str, str]:
    """A new corpus version for each collection: answers cached against the old one go stale."""
    now = container.clock()  # the local stack's clock under LOCAL_CLOCK_START, as the API's
    return {name: container.corpus_versions.stamp(name, now) for name in collections}


def stamp_and_report(container: Container, collections: list[str]) -> int:
    try:
        versions = stamp(container, collections)
    except ServiceError as exc:
        endpoint = os.environ.get(ENDPOINT, "")
        where = f" at {endpoint} (is `make dev` running?)" if endpoint and is_local_url(endpoint) else ""
        print(
            f"ingest: could not stamp a new corpus version in table {container.settings.table_name!r}{where} "
            f"({exc.reason}); cached answers may be served until they expire (ANSWER_CACHE_TTL). "
            "Re-run with --stamp-only once the table is reachable.",
            file=sys.stderr,
        )
        return 1
    for name, version in versions.items():
        print(f"ingest: corpus version of {name!r} is now {version} (cached answers for it are stale)")
    return 0


def book_file(target: Target, chunk: Chunk) -> str:
    for book in target.books:
        if chunk in book.chunks:
            return book.path.name
    return chunk.source


def _metadata(chunk: Chunk, file_name: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "source": chunk.source,
        "title": chunk.title,
        "chunk": chunk.index,
        "content_hash": chunk.content_hash,
        "file": file_name,
    }
    if chunk.page is not None:
        metadata["page"] = chunk.page
    return metadata


def _stored_hashes(collection: Any, ids: list[str]) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for start in range(0, len(ids), LOOKUP_BATCH):
        found = collection.get(ids=ids[start : start + LOOKUP_BATCH], include=["metadatas"])
        for chunk_id, metadata in zip(found["ids"], found["metadatas"] or [], strict=True):
            hashes[chunk_id] = str((metadata or {}).get("content_hash", ""))
    return hashes


def _ids_of_file(collection: Any, file_name: str) -> set[str]:
    """Chunks this file put there before (``source`` is how earlier versions recorded it)."""
    ids: set[str] = set()
    for key in ("file", "source"):
        ids.update(collection.get(where={key: file_name}, include=[])["ids"])
    return ids


class Progress:
    """A progress bar on a terminal; a line per batch otherwise (CI logs, pipes)."""

    WIDTH = 30

    def __init__(self, total: int, out: TextIO) -> None:
        self._total = total
        self._done = 0
        self._out = out
        self._tty = out.isatty()

    def advance(self, count: int, label: str) -> None:
        self._done += count
        filled = self.WIDTH * self._done // max(1, self._total)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self._done}/{self._total} chunks  {label}"
        self._out.write(f"\r{line}" if self._tty else f"{line}\n")
        self._out.flush()

    def done(self) -> None:
        if self._tty and self._total:
            self._out.write("\n")


class _Quiet:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def choose_aws(env: dict[str, str], allow_aws: bool) -> None:
    """Where corpus versions are stamped (boto3 reads ``os.environ``): ``make dev``'s emulator, or
    with ``--allow-aws`` the account and table the shell's AWS settings and TABLE_NAME name.

    Without ``--allow-aws`` nothing reaches AWS: a non-local AWS_ENDPOINT_URL is refused, and so
    are a profile or keys with no endpoint (they mean a deployed table: say so with the flag)."""
    configured = configured_environment(dict(os.environ))  # .env under the shell, no local defaults
    if allow_aws:
        if not configured.get("TABLE_NAME"):
            raise RealAwsError("ingest: --allow-aws needs TABLE_NAME (the deployed stack's table) in the environment")
        return
    if not configured.get(ENDPOINT):
        named = [name for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID") if configured.get(name)]
        if named:
            raise RealAwsError(
                f"ingest: refusing to run: {named[0]} is set and {ENDPOINT} is not, so corpus versions would be "
                f"stamped in a real AWS account. For a deployed stack add --allow-aws (with TABLE_NAME and "
                f"AWS_DEFAULT_REGION); for make dev's emulator unset {named[0]}."
            )
    use_local_aws(env, "ingest", hint="; add --allow-aws to ingest into a deployed stack")
    for name in PROFILE_VARIABLES:
        os.environ.pop(name, None)
    for name in (ENDPOINT, *LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION"):
        os.environ[name] = env[name]


def _confirmed(yes: bool, question: str) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument(
        "--collection",
        help="put every file into this collection (default: one per file, named after it; "
        "the sample corpus infra/corpus: CHROMA_COLLECTION)",
    )
    parser.add_argument("--yes", action="store_true", help="embed with OpenAI without asking (after the estimate)")
    parser.add_argument("--if-empty", action="store_true", help="skip when the collection already has data")
    parser.add_argument(
        "--stamp-only",
        action="store_true",
        help="only stamp a new corpus version (invalidates cached answers) on --collection or the served collections",
    )
    parser.add_argument(
        "--allow-aws",
        action="store_true",
        help="stamp corpus versions in a real AWS account (a deployed stack: AWS_PROFILE or keys, "
        "AWS_DEFAULT_REGION, TABLE_NAME); without it only a local emulator is used",
    )
    args = parser.parse_args(argv)
    if not args.paths and not args.stamp_only:
        parser.error("give files or folders to ingest (or --stamp-only)")
    # the local stack's defaults (and .env) under the real environment: by hand, it finds `make dev`'s Chroma
    env = local_environment(dict(os.environ))
    choose_aws(env, args.allow_aws)
    container = Container(load_settings(env))
    settings = container.settings
    if args.stamp_only:
        return stamp_and_report(container, [args.collection] if args.collection else settings.collections)
    try:
        return ingest_files(container, args)
    except (UpstreamError, httpx.TransportError, ConnectionError) as exc:
        if isinstance(exc, UpstreamError) and not exc.reason.startswith("chroma"):
            raise SystemExit(f"ingest: {exc.reason}") from None  # the embeddings provider (OpenAI)
        scheme = "https" if settings.chroma_ssl else "http"
        print(
            f"ingest: cannot reach Chroma at {scheme}://{settings.chroma_host}:{settings.chroma_port} — "
            "is `make dev` running? (CHROMA_HOST and CHROMA_PORT say where, in the environment or .env)",
            file=sys.stderr,
        )
        return 1


def ingest_files(container: Container, args: argparse.Namespace) -> int:
    """The CLI's ingest: estimate, (confirm,) embed, stamp, and say how to serve what is new."""
    settings = container.settings
    if args.if_empty and not needs_ingest(container):
        print(f"ingest: collection {settings.chroma_collection!r} is ready; nothing to do")
        return 0
    targets = prepare(container, document_paths(args.paths), args.collection)
    chunks, tokens, dollars = estimate(targets, settings.price_book)
    for target in targets:
        files = ", ".join(book.path.name for book in target.books)
        print(f"ingest: {target.name!r} <- {files}: {len(target.pending)} chunks to embed, {len(target.stale)} stale")
    if settings.embedding_provider == "openai" and chunks:
        print(f"ingest: estimate {chunks} chunks, {tokens} tokens, ${dollars:.6f} with {settings.embedding_model}")
        if not _confirmed(args.yes, "Embed them with OpenAI?"):
            print("ingest: nothing embedded; re-run with --yes to proceed", file=sys.stderr)
            return 2
    run(container, targets)
    names = [target.name for target in targets]
    print(f"ingest: {chunks} chunks embedded into {','.join(names)} ({container.embedder.model})")
    status = stamp_and_report(container, names)
    print(serve_line(settings.collections, names))
    return status


def serve_line(served: list[str], ingested: list[str]) -> str:
    """What to do for the API to search ``ingested``: nothing, or restart with the exact setting."""
    if all(name in served for name in ingested):
        return f"ingest: make dev already serves {','.join(ingested)} (CHROMA_COLLECTIONS={','.join(served)})"
    every = ",".join(dict.fromkeys([*served, *ingested]))
    return f"ingest: restart make dev with CHROMA_COLLECTIONS={every} to serve them (or put that line in .env)"


if __name__ == "__main__":
    sys.exit(main())
