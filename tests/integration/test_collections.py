"""Collections the user already has, against the real Chroma server: several searched together,
any distance space, foreign metadata, a dimension check, and comparison questions."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from dnd_rag.container import Container
from dnd_rag.logic.retrieval.text import count_tokens
from dnd_rag.providers.chroma_store import ChromaRetriever
from dnd_rag.providers.offline import OFFLINE_EMBEDDING_MODEL, hash_embedding
from dnd_rag.providers.tokenizer import count_text_tokens
from dnd_rag.settings import load_settings
from tests.fakes.openai_server import EMBEDDING_TOKENIZER_MODEL
from tests.support.events import http_event, parse

CUBE = "What does a gelatinous cube do to creatures it engulfs?"
FIGHTER = "How many experience points does a fighter need to become 9th level?"
DRAGONS = "What is the difference between a red dragon and a white dragon?"

MONSTER_PAGES = [
    ("mm-1", "A gelatinous cube engulfs creatures in its path and dissolves them with acid.", 242),
    ("mm-2", "The gelatinous cube is nearly transparent and fills a dungeon corridor.", 242),
    ("mm-3", "Owlbears hunt at dusk and are as fierce as their name suggests.", 249),
]


def _client(base_env: dict[str, str]) -> Any:
    return Container(load_settings(base_env)).chroma_client()


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _plain_collection(base_env: dict[str, str], rows: list[tuple[str, str, int]], **create: Any) -> str:
    """A collection as another pipeline builds it: the plain client, default l2 space, its own keys."""
    name = _name("foreign")
    collection = _client(base_env).create_collection(name, embedding_function=None, **create)
    collection.add(
        ids=[chunk_id for chunk_id, _, _ in rows],
        embeddings=[hash_embedding(text) for _, text, _ in rows],  # type: ignore[arg-type]
        documents=[text for _, text, _ in rows],
        metadatas=[{"file_name": "monster_manual.pdf", "page_number": page} for _, _, page in rows],
    )
    return name


def _ask(make_app: Any, call: Any, env: dict[str, str], question: str, **body: Any) -> tuple[int, dict[str, Any]]:
    app, _ = make_app(env)
    status, answer, _ = parse(
        call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": question, **body}))
    )
    return status, answer


def test_a_plain_l2_collection_is_served_beside_ours_and_sources_name_their_collection(base_env, make_app, call):
    # Given a collection made with the plain chromadb client (l2, no embedding_model metadata)
    foreign = _plain_collection(base_env, MONSTER_PAGES)
    env = {"CHROMA_COLLECTIONS": f"{foreign},rules_offline"}

    # When questions about either book are asked
    cube_status, cube = _ask(make_app, call, env, CUBE, k=4)
    fighter_status, fighter = _ask(make_app, call, env, FIGHTER, k=4)

    # Then each is answered from the right collection, which every source names (with its page)
    assert (cube_status, fighter_status) == (200, 200)
    top = cube["sources"][0]
    assert (top["collection"], top["source"], top["page"]) == (foreign, "monster_manual.pdf", 242)
    assert "acid" in cube["answer"]
    assert fighter["sources"][0]["collection"] == "rules_offline"
    assert fighter["sources"][0]["section"]  # our ingester's heading path
    assert "250,001" in fighter["answer"]
    for source in cube["sources"] + fighter["sources"]:
        assert 0 <= source["score"] <= 1
        assert source["collection"] in (foreign, "rules_offline")
    assert {s["collection"] for s in cube["sources"]} == {foreign, "rules_offline"}  # merged, not one book


def _true_cosine(q: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    return dot / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in v)))


TEXTS = [
    "A gelatinous cube engulfs creatures and dissolves them.",
    "A red dragon breathes fire in a cone.",
    "Fighters gain an extra attack at 5th level.",
    "The owlbear is part owl and part bear.",
    "A white dragon breathes a cone of freezing cold.",
]


@pytest.mark.parametrize("length", [1.0, 2.5])
def test_scores_are_the_same_cosine_similarity_in_every_distance_space(base_env, length):
    # Given the same vectors (unit-length, or 2.5 long) stored in cosine, l2 and ip collections,
    # the space named the legacy way (metadata) or the new way (configuration)
    client = _client(base_env)
    vectors = [[x * length for x in hash_embedding(text)] for text in TEXTS]
    ids = [f"t{n}" for n in range(len(TEXTS))]
    names = {}
    for space, how in [("cosine", "metadata"), ("l2", "default"), ("ip", "configuration"), ("l2", "metadata")]:
        name = _name(f"space_{space}")
        create: dict[str, Any] = {}
        if how == "metadata":
            create["metadata"] = {"hnsw:space": space}
        elif how == "configuration":
            create["configuration"] = {"hnsw": {"space": space}}
        client.create_collection(name, embedding_function=None, **create).add(
            ids=ids,
            embeddings=vectors,  # type: ignore[arg-type]
            documents=TEXTS,
        )
        names[f"{space}/{how}"] = name
    query = hash_embedding("Which dragon breathes cold?")
    expected = {chunk_id: _true_cosine(query, v) for chunk_id, v in zip(ids, vectors, strict=True)}

    # When each collection is searched alone for all its passages
    for label, name in names.items():
        retriever = ChromaRetriever(lambda: client, [name], OFFLINE_EMBEDDING_MODEL)
        [passages] = retriever.search([query], len(TEXTS), timeout_seconds=5)

        # Then every score is the clamped cosine similarity, whatever the space and the length
        got = {p.id: p.score for p in passages}
        assert set(got) == set(ids), label
        for chunk_id, similarity in expected.items():
            assert got[chunk_id] == pytest.approx(max(0.0, similarity), abs=1e-4), (label, chunk_id)
    assert max(expected, key=lambda chunk_id: expected[chunk_id]) == "t4"  # the white dragon: a meaningful check


def test_a_collection_of_another_dimension_is_refused_naming_it(base_env, make_app, call, caplog):
    # Given a collection of 8-dimensional vectors (another embedding model) beside ours
    name = _name("tiny_dims")
    _client(base_env).create_collection(name, embedding_function=None).add(
        ids=["a"],
        embeddings=[[0.5] * 8],  # type: ignore[arg-type]
        documents=["eight numbers"],
    )

    # When a question is asked
    status, body = _ask(make_app, call, {"CHROMA_COLLECTIONS": f"rules_offline,{name}"}, FIGHTER)

    # Then a 502 says which collection does not match, and a log line names it and why
    assert (status, body["error"]) == (502, "upstream_error")
    assert name in body["message"]
    mismatch = [
        r for r in caplog.records if getattr(r, "collection", None) == name and "does not match" in r.getMessage()
    ]
    assert mismatch
    assert "8-dimensional" in mismatch[0].why
    assert "1024" in mismatch[0].why


def test_a_collection_built_with_another_model_by_our_ingester_is_refused(base_env, make_app, call):
    name = _name("other_model")
    _client(base_env).create_collection(
        name, embedding_function=None, metadata={"embedding_model": "text-embedding-3-large"}
    ).add(ids=["a"], embeddings=[hash_embedding("x")], documents=["x"])  # type: ignore[arg-type]

    status, body = _ask(make_app, call, {"CHROMA_COLLECTIONS": name}, FIGHTER)

    assert (status, body["error"]) == (502, "upstream_error")
    assert name in body["message"]


# A book where the question's own top passages are all about the red dragon: each one shares more
# of the question's words ("difference", "red", "dragon") than the one white-dragon passage does.
CROWDED = [
    (f"red-{n}", f"The difference a red dragon makes, part {n}: the red dragon is the greediest dragon.", n)
    for n in range(1, 9)
] + [("white-1", "White dragons lair in arctic ice and breathe freezing cold.", 90)]


def test_a_comparison_retrieves_both_entities_where_the_plain_top_k_holds_one(base_env, make_app, call):
    book = _plain_collection(base_env, CROWDED)

    # Without the entity step the question's own top 4 is all red dragon (the measured baseline)
    _, plain = _ask(make_app, call, {"CHROMA_COLLECTIONS": book, "RETRIEVAL_ENTITY_QUERIES": "false"}, DRAGONS, k=4)
    assert all(s["id"].startswith("red-") for s in plain["sources"])
    assert "white" not in plain["answer"].lower()

    # With it, the white dragon has a place among the first passages and the answer quotes both
    status, body = _ask(make_app, call, {"CHROMA_COLLECTIONS": book}, DRAGONS, k=4, debug=True)

    assert status == 200
    assert [s["id"] for s in body["sources"]][:3].count("white-1") == 1
    assert "red dragon" in body["answer"].lower()
    assert "white dragons lair in arctic ice" in body["answer"].lower()
    retrieval = next(d for d in body["diagnostics"] if d["stage"] == "retrieval")
    assert retrieval["queries"] == ["question", "entity: red dragon", "entity: white dragon"]
    white = next(p for p in retrieval["passages"] if p["id"] == "white-1")
    assert white["via"] == "entity: white dragon"
    assert white["collection"] == book
    # one embeddings call for the question and both entities, and the tokens of all three are charged
    expected_tokens = count_tokens(DRAGONS) + count_tokens("red dragon") + count_tokens("white dragon")
    assert body["usage"]["embedding_tokens"] == plain["usage"]["embedding_tokens"] + expected_tokens - count_tokens(
        DRAGONS
    )


def test_entity_embeddings_ride_on_the_questions_paid_call(make_app, call, openai_env, openai_state):
    # Given the real OpenAI client against the fake server
    app, _ = make_app(openai_env)

    # When a comparison question is answered
    status, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": DRAGONS})))

    # Then OpenAI saw one embeddings request (three inputs), and exactly its tokens were charged
    assert status == 200, body
    embeddings = [r for r in openai_state.billed_records() if r["path"].endswith("/embeddings")]
    assert len(embeddings) == 1
    assert body["usage"]["embedding_tokens"] == embeddings[0]["prompt_tokens"]
    texts = [DRAGONS, "red dragon", "white dragon"]
    assert embeddings[0]["prompt_tokens"] == sum(count_text_tokens(EMBEDDING_TOKENIZER_MODEL, t) for t in texts)
    assert {"red_dragon.md", "white_dragon.md"} <= {s["source"] for s in body["sources"]}


def test_a_long_vector_in_an_l2_collection_is_ranked_by_cosine_not_by_distance(base_env):
    # Given an l2 collection where the chunk pointing exactly the question's way is 10 times too
    # long (far in l2) and a chunk slightly off that direction is unit-length (near in l2)
    client = _client(base_env)
    name = _name("long_l2")
    query = hash_embedding("Which dragon breathes cold?")
    aside = hash_embedding("A white dragon breathes a cone of freezing cold.")
    client.create_collection(name, embedding_function=None).add(
        ids=["long", "near", "far"],
        embeddings=[[10 * x for x in query], aside, [-x for x in query]],  # type: ignore[arg-type]
        documents=["same direction, long", "close in l2", "opposite"],
    )
    by_distance = client.get_collection(name).query(query_embeddings=[query], n_results=1)["ids"][0]

    # When one passage is asked for
    [passages] = ChromaRetriever(lambda: client, [name], OFFLINE_EMBEDDING_MODEL).search([query], 1, 5)

    # Then it is the one with cosine 1, although Chroma's own nearest is the other
    assert by_distance == ["near"]
    assert [(p.id, p.score) for p in passages] == [("long", 1.0)]
