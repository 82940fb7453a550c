"""Retrieval evaluation on the generated corpus (``make eval``): recall@k, and the share of
comparison questions whose every entity is retrieved, with and without the entity step; and the
relevance gate at the configured threshold (MIN_RELEVANCE, else the offline embedder's default):
how many answerable questions it would refuse (goal <= 2 %), how many unanswerable ones it
catches (goal >= 90 %).

Starts its own Chroma server on a free port (data in a temporary folder), ingests the three
generated books into one collection each with the offline embeddings, and retrieves exactly as
``RagService.retrieve`` does: one embeddings call for the question and the entities it names,
one search over every collection, ``entities.choose`` to pick the k passages.

It needs no AWS service and reaches none, whatever the shell's AWS settings: the corpus versions
the ingester stamps in DynamoDB only invalidate an API's cached answers, and no API serves this
throwaway corpus, so nothing is stamped, and the container's DynamoDB client refuses every call.

    python -m infra.eval.evaluate [--k 3 5 10] [--families N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnd_rag.container import Container
from dnd_rag.logic.retrieval.entities import choose, comparison_entities
from dnd_rag.logic.retrieval.relevance import RelevanceGate
from dnd_rag.models.domain import Passage
from dnd_rag.providers.chroma_store import ChromaRetriever
from dnd_rag.providers.offline import OfflineEmbedder
from dnd_rag.settings import load_settings
from infra.eval.corpus import Corpus, Question, generate
from infra.local.processes import free_port, running
from infra.local.stack import chroma_command, local_environment
from infra.scripts.ingest import ingest

SEARCH_TIMEOUT_SECONDS = 20.0
GATE_K = 15  # the API's default k (the gate looks at the best score, which k hardly moves)
GOAL_FALSE_REFUSAL = 0.02
GOAL_CATCH = 0.90


@dataclass(frozen=True)
class Scores:
    k: int
    entity_step: bool
    recall: float  # share of single-answer questions whose needed section is among the k
    coverage: float  # share of comparison questions with every entity's section among the k
    questions: int
    comparisons: int


def _found(passages: list[Passage], collection: str, section: str) -> bool:
    return any(
        p.collection == collection and (p.title == section or p.title.startswith(f"{section} >")) for p in passages
    )


def retrieve(retriever: ChromaRetriever, question: str, k: int, entity_step: bool) -> list[Passage]:
    entities = comparison_entities(question) if entity_step else []
    texts = [question, *entities]
    vectors = OfflineEmbedder().embed(texts).vectors
    hits = retriever.search(vectors, k, SEARCH_TIMEOUT_SECONDS)
    return choose(hits[0], dict(zip(entities, hits[1:], strict=True)), k).passages


def score(retriever: ChromaRetriever, questions: list[Question], k: int, entity_step: bool) -> Scores:
    single = [q for q in questions if not q.comparison]
    pairs = [q for q in questions if q.comparison]
    recalled = covered = 0
    for question in questions:
        passages = retrieve(retriever, question.text, k, entity_step)
        every = all(_found(passages, collection, section) for collection, section in question.needs)
        if question.comparison:
            covered += every
        else:
            recalled += every
    return Scores(k, entity_step, recalled / max(1, len(single)), covered / max(1, len(pairs)), len(single), len(pairs))


@dataclass(frozen=True)
class GateRates:
    threshold: float
    false_refusal: float  # share of answerable questions the gate refuses
    catch: float  # share of unanswerable questions it refuses
    answerable: int
    unanswerable: int
    lowest_answerable: float  # the best passage's score of the least similar answerable question
    highest_unanswerable: float  # ... of the most similar unanswerable one

    @property
    def meets_goals(self) -> bool:
        return self.false_refusal <= GOAL_FALSE_REFUSAL and self.catch >= GOAL_CATCH


def gate_rates(retriever: ChromaRetriever, corpus: Corpus, threshold: float) -> GateRates:
    """The gate's rule (logic/retrieval/relevance.py) on the passages the API would retrieve."""
    gate = RelevanceGate(threshold)
    answerable = [retrieve(retriever, q.text, GATE_K, entity_step=True) for q in corpus.questions]
    unanswerable = [retrieve(retriever, text, GATE_K, entity_step=True) for text in corpus.unanswerable]

    def best(passages: list[Passage]) -> float:
        return max((p.score for p in passages), default=0.0)

    return GateRates(
        threshold,
        sum(not gate.covers(p) for p in answerable) / max(1, len(answerable)),
        sum(not gate.covers(p) for p in unanswerable) / max(1, len(unanswerable)),
        len(answerable),
        len(unanswerable),
        min((best(p) for p in answerable), default=0.0),
        max((best(p) for p in unanswerable), default=0.0),
    )


def gate_report(rates: GateRates) -> str:
    verdict = "meets" if rates.meets_goals else "MISSES"
    return "\n".join(
        [
            f"relevance gate at MIN_RELEVANCE={rates.threshold:g} (offline embeddings, k={GATE_K}): "
            f"{verdict} the goals",
            f"  false refusals on {rates.answerable} answerable questions: {rates.false_refusal:.1%} "
            f"(goal <= {GOAL_FALSE_REFUSAL:.0%}); lowest best score {rates.lowest_answerable:.3f}",
            f"  caught of {rates.unanswerable} unanswerable questions: {rates.catch:.1%} "
            f"(goal >= {GOAL_CATCH:.0%}); highest best score {rates.highest_unanswerable:.3f}",
        ]
    )


class NoAws:
    """The DynamoDB client of the evaluation's container: every call is a bug, never a request to AWS."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the retrieval evaluation uses no AWS service (DynamoDB {name} was called)")


def ingest_corpus(container: Container, corpus: Corpus, folder: Path) -> ChromaRetriever:
    """Ingest ``corpus`` through ``container``'s Chroma, one collection per book."""
    for collection, text in corpus.books.items():
        path = folder / f"{collection}.md"
        path.write_text(text, encoding="utf-8")
        ingest(container, [path], collection=collection, stamp_versions=False)
    return ChromaRetriever(container.chroma_client, list(corpus.books), container.embedder.model)


def evaluate(container: Container, corpus: Corpus, ks: list[int], folder: Path) -> list[Scores]:
    """Ingest ``corpus`` and score it at every k, both ways."""
    retriever = ingest_corpus(container, corpus, folder)
    return [score(retriever, corpus.questions, k, step) for k in ks for step in (False, True)]


def threshold(container: Container) -> float:
    return container.settings.min_relevance_for(container.embedder.model)


def report(results: list[Scores]) -> str:
    first = results[0]
    lines = [
        f"retrieval evaluation: {first.questions} single-answer questions, {first.comparisons} comparisons "
        f"(offline embeddings)",
        f"{'k':>3}  {'entity step':<12} {'recall@k':>9} {'comparison coverage':>20}",
    ]
    lines += [f"{s.k:>3}  {'on' if s.entity_step else 'off':<12} {s.recall:>9.3f} {s.coverage:>20.3f}" for s in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5, 10, 15])
    parser.add_argument("--families", type=int, default=None, help="monster families to generate (default: all)")
    args = parser.parse_args(argv)
    corpus = generate(families=args.families)
    with tempfile.TemporaryDirectory(prefix="dnd-rag-eval-") as temporary:
        folder = Path(temporary)
        port = free_port()
        env = local_environment({**os.environ, "CHROMA_PORT": str(port), "EMBEDDING_PROVIDER": "offline"})
        env.pop("OPENAI_API_KEY", None)
        env["LLM_PROVIDER"] = "offline"
        with running(chroma_command(env, folder), port, folder / "chroma.log", env):
            container = Container(load_settings(env), dynamodb_client=NoAws())
            retriever = ingest_corpus(container, corpus, folder)
            print(report([score(retriever, corpus.questions, k, step) for k in args.k for step in (False, True)]))
            print(gate_report(gate_rates(retriever, corpus, threshold(container))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
