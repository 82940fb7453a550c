"""The ingester on what users have (PDF, JSON chunk exports), against the real Chroma server:
one collection per book, re-runs that add and pay nothing, the OpenAI estimate before any spend."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from dnd_rag.container import Container
from dnd_rag.providers.tokenizer import count_text_tokens
from dnd_rag.settings import load_settings
from infra.scripts.ingest import EMBEDDING_TOKENIZER, ingest, prepare, run
from infra.scripts.readers import collection_name
from tests.fakes.openai_server import EMBEDDING_TOKENIZER_MODEL
from tests.support.events import http_event, parse
from tests.support.pdf import write_pdf
from tests.support.servers import REPO_ROOT, python_env

PAGES = [
    ["Beholder", "A beholder floats and fires ten eye rays from its eyestalks."],
    ["Owlbear", "An owlbear is a ferocious beast with the body of a bear."],
    ["Gelatinous Cube", "A gelatinous cube engulfs creatures and dissolves them with acid."],
]


@pytest.fixture
def book(tmp_path):
    return write_pdf(tmp_path / f"Monster Book {uuid.uuid4().hex[:6]}.pdf", PAGES)


def _count(container, name):
    return container.chroma_client().get_collection(name).count()


def test_a_pdf_becomes_its_own_collection_served_with_pages(base_env, book, make_app, call):
    # Given a PDF ingested with the defaults
    container = Container(load_settings(base_env))
    counts = ingest(container, [book])
    name = collection_name(book)

    # Then it has its own collection, one chunk per page here, and re-reading finds nothing to do
    assert name.startswith("monster_book_")
    assert counts == {book.name: 3}
    assert _count(container, name) == 3
    assert [len(t.pending) + len(t.stale) for t in prepare(container, [book])] == [0]

    # And the API serves it beside the rules, citing book and page
    app, _ = make_app({"CHROMA_COLLECTIONS": f"rules_offline,{name}"})
    event = http_event("POST", "/api/query", token="dev-alice", body={"question": "What does a gelatinous cube do?"})
    status, body, _ = parse(call(app, event))
    assert status == 200
    top = body["sources"][0]
    assert (top["collection"], top["source"], top["page"]) == (name, book.name, 3)
    assert "acid" in body["answer"]


def test_json_chunk_exports_keep_their_ids_sources_and_pages(base_env, tmp_path):
    # Given two exports: Chroma's get() shape and a list of LangChain-style documents
    chroma_dump = tmp_path / f"dump_{uuid.uuid4().hex[:6]}.json"
    chroma_dump.write_text(
        json.dumps(
            {
                "ids": ["phb-12", "phb-13"],
                "documents": ["Fighters gain Extra Attack at 5th level.", "Wizards prepare spells from a spellbook."],
                "metadatas": [{"source": "phb.pdf", "page_number": 72}, {"source": "phb.pdf", "page_number": 112}],
            }
        )
    )
    documents = tmp_path / f"docs_{uuid.uuid4().hex[:6]}.jsonl"
    documents.write_text(
        "\n".join(
            json.dumps({"page_content": text, "metadata": {"file_name": "dmg.pdf", "page": page, "section": "Traps"}})
            for text, page in [("A pit trap is hidden under a false floor.", 120), ("", 121)]
        )
    )
    container = Container(load_settings(base_env))

    counts = ingest(container, [chroma_dump, documents])

    assert counts == {chroma_dump.name: 2, documents.name: 1}  # the empty chunk is skipped
    stored = container.chroma_client().get_collection(collection_name(chroma_dump)).get(ids=["phb-13"])
    assert stored["metadatas"][0]["page"] == 112
    assert stored["metadatas"][0]["source"] == "phb.pdf"
    traps = container.chroma_client().get_collection(collection_name(documents)).get()
    assert traps["metadatas"][0]["title"] == "Traps"
    assert traps["metadatas"][0]["source"] == "dmg.pdf"


def test_an_interrupted_run_resumes_with_only_what_is_missing(base_env, book):
    container = Container(load_settings(base_env))
    [target] = prepare(container, [book])
    target.pending = target.pending[:1]  # the run "stopped" after its first chunk
    run(container, [target])

    [again] = prepare(container, [book])

    assert [c.page for c in again.pending] == [2, 3]


def test_the_ingester_never_overwrites_a_collection_another_pipeline_built(base_env, book):
    container = Container(load_settings(base_env))
    name = f"theirs_{uuid.uuid4().hex[:6]}"
    container.chroma_client().create_collection(name, embedding_function=None).add(
        ids=["x"], embeddings=[[0.1] * 384], documents=["their chunk"]
    )

    with pytest.raises(SystemExit, match="another pipeline"):
        ingest(container, [book], collection=name)

    assert _count(container, name) == 1


def _cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "infra.scripts.ingest", *args],
        cwd=REPO_ROOT,
        env=python_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _embedding_tokens_billed(state):
    return [r["prompt_tokens"] for r in state.billed_records() if r["path"].endswith("/embeddings")]


def test_with_openai_the_cli_estimates_first_needs_yes_and_a_rerun_pays_nothing(openai_env, openai_state, book):
    expected_tokens = sum(count_text_tokens(EMBEDDING_TOKENIZER, " ".join(lines).strip()) for lines in PAGES)

    # Without --yes (and no terminal to ask): the estimate, and nothing embedded or billed
    refused = _cli(openai_env, str(book))
    assert refused.returncode == 2, refused.stderr
    assert "estimate 3 chunks" in refused.stdout
    assert "with text-embedding-3-small" in refused.stdout
    assert "re-run with --yes" in refused.stderr
    assert _embedding_tokens_billed(openai_state) == []

    # With --yes: progress, and OpenAI billed exactly the tokens estimated
    done = _cli(openai_env, "--yes", str(book))
    assert done.returncode == 0, done.stderr
    assert "3/3 chunks" in done.stderr
    billed = _embedding_tokens_billed(openai_state)
    estimated = int(done.stdout.split("estimate 3 chunks, ")[1].split(" tokens")[0])
    assert sum(billed) == estimated
    assert EMBEDDING_TOKENIZER == EMBEDDING_TOKENIZER_MODEL  # the fake bills with the tokenizer we estimate with
    assert estimated >= expected_tokens - 3  # page texts as extracted (line breaks may differ by a token or so)

    # Re-running: nothing to embed, nothing billed, nothing added
    again = _cli(openai_env, "--yes", str(book))
    assert again.returncode == 0, again.stderr
    assert "0 chunks to embed" in again.stdout
    assert _embedding_tokens_billed(openai_state) == billed
    container = Container(load_settings(openai_env))
    assert _count(container, collection_name(book)) == 3


def test_your_own_markdown_gets_its_own_collection_and_the_exact_restart_line(base_env, tmp_path):
    # Given your own notes in Markdown, ingested by hand with no --collection
    notes = tmp_path / f"My Notes {uuid.uuid4().hex[:6]}.md"
    notes.write_text("# Homebrew\n\nA moon elf may cast dancing lights at will.\n")
    name = collection_name(notes)

    result = _cli(base_env, str(notes))

    # Then they land in a collection named after the file, never in the served sample corpus
    assert result.returncode == 0, result.stderr
    assert f"ingest: {name!r} <- {notes.name}: 1 chunks to embed" in result.stdout
    container = Container(load_settings(base_env))
    assert _count(container, name) == 1
    sample = container.chroma_client().get_collection(base_env["CHROMA_COLLECTION"])
    assert sample.get(where={"file": notes.name}, include=[])["ids"] == []
    # and the last line says exactly how to serve them
    assert result.stdout.splitlines()[-1] == (
        f"ingest: restart make dev with CHROMA_COLLECTIONS={base_env['CHROMA_COLLECTION']},{name} "
        "to serve them (or put that line in .env)"
    )

    # Once served, a re-ingest says so instead
    served = _cli({**base_env, "CHROMA_COLLECTIONS": f"{base_env['CHROMA_COLLECTION']},{name}"}, str(notes))
    assert served.stdout.splitlines()[-1].startswith(f"ingest: make dev already serves {name} ")
