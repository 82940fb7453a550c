"""Chroma's distances turned back into cosine similarities, for unit and non-unit vectors alike."""

import math
import random

import pytest

from dnd_rag.providers.chroma_space import cosine, is_unit, norm, score


def _chroma_distance(space: str, q: list[float], v: list[float]) -> float:
    """What hnswlib (Chroma's index) reports for each space."""
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    if space == "cosine":
        return 1 - dot / (norm(q) * norm(v))
    if space == "ip":
        return 1 - dot
    return sum((a - b) ** 2 for a, b in zip(q, v, strict=True))  # l2 is squared


def _true_cosine(q: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(q, v, strict=True)) / (norm(q) * norm(v))


def _vectors(seed: int, scale: float) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    return [rng.gauss(0, 1) * scale for _ in range(16)], [rng.gauss(0, 1) * scale * 1.7 for _ in range(16)]


@pytest.mark.parametrize("space", ["cosine", "l2", "ip"])
@pytest.mark.parametrize("seed", range(5))
def test_every_space_maps_back_to_the_exact_cosine_given_the_norms(space, seed):
    # Given vectors of arbitrary lengths
    q, v = _vectors(seed, scale=3.0)

    # When Chroma's distance is converted with both norms known
    similarity = cosine(space, _chroma_distance(space, q, v), norm(q), norm(v))

    # Then it is the cosine similarity, whatever the space
    assert similarity == pytest.approx(_true_cosine(q, v), abs=1e-9)


@pytest.mark.parametrize(("space", "formula"), [("l2", lambda d: 1 - d / 2), ("ip", lambda d: 1 - d)])
def test_for_unit_vectors_l2_is_two_minus_two_cos_and_ip_is_cos(space, formula):
    q, v = _vectors(7, scale=1.0)
    q = [x / norm(q) for x in q]
    v = [x / norm(v) for x in v]
    distance = _chroma_distance(space, q, v)

    assert cosine(space, distance, 1.0) == pytest.approx(formula(distance), abs=1e-12)
    assert cosine(space, distance, 1.0) == pytest.approx(_true_cosine(q, v), abs=1e-9)


def test_assuming_unit_norm_for_long_vectors_would_be_wrong():
    # the reason non-unit collections have their vectors fetched: the shortcut is not the cosine
    q, v = _vectors(3, scale=3.0)
    distance = _chroma_distance("l2", q, v)

    assert abs(cosine("l2", distance, norm(q)) - _true_cosine(q, v)) > 0.1


def test_scores_are_clamped_to_the_unit_interval():
    assert score(-0.4) == 0.0
    assert score(1.0000001) == 1.0
    assert score(0.8312345678) == 0.831235


def test_unit_norm_detection():
    assert is_unit([[0.6, 0.8], [1.0, 0.0]])
    assert not is_unit([[0.6, 0.8], [2.0, 0.0]])


def test_an_unknown_space_is_refused():
    with pytest.raises(ValueError, match="manhattan"):
        cosine("manhattan", 0.5, 1.0)


def test_a_zero_vector_has_no_direction():
    assert cosine("l2", 4.0, 0.0) == 0.0
    assert not math.isnan(cosine("ip", 1.0, 0.0, 1.0))
