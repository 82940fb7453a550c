"""A small run of the retrieval evaluation (``make eval`` runs the full one) on the real Chroma."""

from dnd_rag.container import Container
from dnd_rag.settings import load_settings
from infra.eval.corpus import generate
from infra.eval.evaluate import evaluate, report


def test_the_entity_step_covers_comparisons_the_plain_top_k_misses(base_env, tmp_path):
    # Given the generated corpus with two monster families, one collection per book
    corpus = generate(families=2)
    container = Container(load_settings(base_env))

    # When it is scored at k=3 without and with the entity step
    without, with_step = evaluate(container, corpus, [3], tmp_path)

    # Then the entity step covers every comparison where the plain top 3 does not, at no cost in recall
    assert (without.entity_step, with_step.entity_step) == (False, True)
    assert without.comparisons == with_step.comparisons == 10
    assert without.coverage < 0.6
    assert with_step.coverage == 1.0
    assert with_step.recall == without.recall > 0.9
    assert "comparison coverage" in report([without, with_step])
