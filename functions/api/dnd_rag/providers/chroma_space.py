"""Chroma distances as cosine similarities, whatever the collection's distance space.

Chroma (hnswlib) reports, for a query vector q and a stored vector v:

    cosine:  d = 1 - q.v / (|q| |v|)
    ip:      d = 1 - q.v
    l2:      d = |q - v|^2 = |q|^2 + |v|^2 - 2 q.v      (squared, not the Euclidean distance)

so the cosine similarity c = q.v / (|q| |v|) is, exactly:

    cosine:  c = 1 - d
    ip:      c = (1 - d) / (|q| |v|)
    l2:      c = (|q|^2 + |v|^2 - d) / (2 |q| |v|)

For unit-norm vectors (OpenAI's embeddings and the offline ones are) this is c = 1 - d for ip and
c = 1 - d/2 for l2. The query's norm is known; a stored vector's norm is not, unless asked for:
a collection whose sampled vectors are unit-norm is read with |v| = 1, any other one has its
result vectors fetched with each query so the norm is exact. For unit vectors every space orders
hits as cosine does; for longer ones l2/ip do not, so such a collection is asked for 3k candidates,
re-ranked by cosine (still only among the candidates Chroma's own ordering returns).

Scores are c clamped to [0, 1]: an opposite-direction chunk (c < 0) is as irrelevant as an
orthogonal one, and the clamp makes scores from every collection comparable on one scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SPACES = ("cosine", "l2", "ip")
DEFAULT_SPACE = "l2"  # Chroma's default when a collection names none
UNIT_TOLERANCE = 1e-3


def norm(vector: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def is_unit(vectors: Sequence[Sequence[float]]) -> bool:
    return all(abs(norm(v) - 1.0) <= UNIT_TOLERANCE for v in vectors)


def cosine(space: str, distance: float, query_norm: float, stored_norm: float = 1.0) -> float:
    """The cosine similarity behind ``distance`` (see the module docstring)."""
    if space == "cosine":
        return 1.0 - distance
    scale = query_norm * stored_norm
    if scale == 0:
        return 0.0
    if space == "ip":
        return (1.0 - distance) / scale
    if space == "l2":
        return (query_norm * query_norm + stored_norm * stored_norm - distance) / (2.0 * scale)
    raise ValueError(f"unknown distance space {space!r}")


def score(similarity: float) -> float:
    return round(min(1.0, max(0.0, similarity)), 6)
