"""A small run of the retrieval evaluation (``make eval`` runs the full one) on the real Chroma."""

import os
import subprocess
import sys

from dnd_rag.container import Container
from dnd_rag.settings import load_settings
from infra.eval.corpus import generate
from infra.eval.evaluate import GOAL_CATCH, GOAL_FALSE_REFUSAL, evaluate, gate_rates, ingest_corpus, report, threshold
from tests.support.servers import REPO_ROOT, python_env


def test_the_entity_step_covers_comparisons_the_plain_top_k_misses(base_env, tmp_path):
    # Given the generated corpus with two monster families, one collection per book
    corpus = generate(families=2)
    container = Container(load_settings(base_env))

    # When it is scored at k=3 without and with the entity step
    without, with_step = evaluate(container, corpus, [3], tmp_path)

    # Then the entity step covers every comparison where the plain top 3 does not, at no cost in recall
    assert (without.entity_step, with_step.entity_step) == (False, True)
    assert without.comparisons == with_step.comparisons == 10
    assert without.coverage <= 0.6  # 6 of 10 with offline-hash-1024 (which weighs names more than -384 did)
    assert with_step.coverage == 1.0
    assert with_step.recall == without.recall > 0.9
    assert "comparison coverage" in report([without, with_step])


def test_the_relevance_gate_meets_its_goals_at_the_offline_default(base_env, tmp_path):
    # Given the generated corpus and its unanswerable questions, and the shipped offline threshold
    corpus = generate(families=2)
    container = Container(load_settings({**base_env, "MIN_RELEVANCE": ""}))
    retriever = ingest_corpus(container, corpus, tmp_path)

    # When the gate's rule is applied to what the API would retrieve
    rates = gate_rates(retriever, corpus, threshold(container))

    # Then it refuses at most 2 % of the answerable questions and catches at least 90 % of the others
    assert rates.threshold == 0.3
    assert rates.unanswerable == len(corpus.unanswerable) >= 80
    assert rates.false_refusal <= GOAL_FALSE_REFUSAL
    assert rates.catch >= GOAL_CATCH
    assert rates.meets_goals
    # and the gate is what makes the difference: switched off, it catches nothing
    assert gate_rates(retriever, corpus, 0.0).catch == 0.0


def test_make_eval_runs_on_a_fresh_clone_with_no_aws_settings_and_reaches_no_aws(tmp_path):
    # Given a shell with no AWS variable at all and a HOME with no ~/.aws (a new user's laptop)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": python_env()["PYTHONPATH"]}
    if os.environ.get("CHROMA_BIN"):
        env["CHROMA_BIN"] = os.environ["CHROMA_BIN"]

    # When `make eval`'s module runs (a small corpus)
    result = subprocess.run(
        [sys.executable, "-m", "infra.eval.evaluate", "--families", "2", "--k", "3"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    # Then it prints its table (its container's DynamoDB client would have raised on any call)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "comparison coverage" in result.stdout
    assert "entity step" in result.stdout
    assert "relevance gate at MIN_RELEVANCE=0.3" in result.stdout
    assert "meets the goals" in result.stdout
