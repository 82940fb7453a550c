"""A generated rules corpus for the retrieval evaluation: three "books" (one collection each) and
the questions whose answers they hold, each with the section that answer needs.

Everything is original and deterministic (seeded): classes with XP tables, dozens of monsters in
families written from the same templates (so their wording is deliberately similar: the hard
case for retrieval), and spells. Comparison questions pair monsters of one family.

The unanswerable questions (for the relevance gate) ask what the answerable ones ask, in the same
words, about monsters, classes and spells the books do not have, plus a few off-topic ones: only
the name tells them apart, the hard case for a similarity threshold.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import combinations

CLASSES = [
    "fighter", "wizard", "cleric", "thief", "ranger", "paladin",
    "druid", "bard", "monk", "illusionist", "assassin", "barbarian",
]  # fmt: skip
FAMILIES = {
    "dragon": ["red", "white", "blue", "green", "black", "brass", "bronze", "copper", "silver", "gold"],
    "giant": ["hill", "stone", "frost", "fire", "cloud", "storm"],
    "golem": ["flesh", "clay", "iron", "bone"],
    "elemental": ["air", "earth", "water", "magma"],
    "ooze": ["grey", "ochre", "crimson", "azure"],
    "wraith": ["barrow", "dusk", "mire", "ash", "ember", "frost-bitten", "bog", "hollow"],
}
SPELLS = [
    "arcane bolt", "frost lance", "flame sphere", "stone skin", "gust of wind", "silent step",
    "mending touch", "blinding flash", "chain lightning", "web of shadows", "iron ward", "mirror self",
    "acid splash", "thunder clap", "sleep mist", "charm beast", "fog cloud", "spider climb",
    "water walk", "feather fall", "slow time", "haste", "dimension hop", "true sight",
    "wall of ice", "wall of fire", "cone of frost", "healing word", "bless weapon", "sacred flame",
]  # fmt: skip
SIZES = ["small", "medium", "large", "huge", "gargantuan"]
TERRAIN = ["volcanic peaks", "arctic glaciers", "desert canyons", "deep forests", "sunless swamps", "coastal cliffs"]
TEMPERS = ["greedy", "cunning", "savage", "proud", "patient", "cruel"]
# Absent from the books (generate() checks): the subjects of the unanswerable questions.
UNKNOWN_MONSTERS = [
    "glimmerwight", "owlbear", "beholder", "mind flayer", "basilisk", "manticore", "kraken", "gelatinous cube",
    "rust monster", "hook horror", "displacer beast", "lich", "troll", "imp", "harpy", "chimera",
]  # fmt: skip
UNKNOWN_CLASSES = ["necromancer", "warlock", "sorcerer", "artificer", "witch", "knight", "shaman", "templar"]
UNKNOWN_SPELLS = [
    "magic missile", "meteor swarm", "teleport", "prismatic spray", "wish", "moonbeam", "counterspell", "misty step",
]  # fmt: skip
OFF_TOPIC = [
    "What is the capital of France?", "How do I bake banana bread?", "Who won the 1998 World Cup?",
    "How do I reset my router password?", "hi", "What's the weather tomorrow?", "How much does a used car cost?",
    "Translate good morning into German.", "What is the boiling point of water at altitude?",
    "Which stocks should I buy this year?",
]  # fmt: skip


@dataclass(frozen=True)
class Question:
    text: str
    # (collection, section) pairs that must be retrieved, one per entity; a section matches its subsections
    needs: list[tuple[str, str]]
    comparison: bool = False


@dataclass(frozen=True)
class Corpus:
    books: dict[str, str]  # collection -> Markdown text
    questions: list[Question]
    unanswerable: list[str] = field(default_factory=list)  # questions no book covers


def generate(seed: int = 13, families: int | None = None) -> Corpus:
    rng = random.Random(seed)  # noqa: S311 - reproducible text, not secrets
    questions: list[Question] = []
    books = {
        "eval_players_handbook": _handbook(rng, questions),
        "eval_monster_manual": _monsters(rng, questions, dict(list(FAMILIES.items())[:families])),
        "eval_spellbook": _spells(rng, questions),
    }
    return Corpus(books, questions, _unanswerable(rng, books))


def _unanswerable(rng: random.Random, books: dict[str, str]) -> list[str]:
    text = " ".join(books.values()).lower()
    absent = [name for name in [*UNKNOWN_MONSTERS, *UNKNOWN_CLASSES, *UNKNOWN_SPELLS] if name in text]
    if absent:
        raise ValueError(f"the books mention {absent}: not unanswerable")
    questions = []
    for name in UNKNOWN_MONSTERS:
        questions += [
            f"What is the armor class of a {name}?",
            f"How many hit points does a {name} have?",
            f"Where does a {name} make its lair?",
        ]
    for name in UNKNOWN_CLASSES:
        questions += [
            f"How many experience points does a {name} need to reach level {rng.randint(3, 12)}?",
            f"What die does a {name} roll for hit points?",
        ]
    for name in UNKNOWN_SPELLS:
        questions += [f"What is the range of the {name} spell?", f"What level is the {name} spell?"]
    return [*questions, *OFF_TOPIC]


def _title(words: str) -> str:
    return " ".join(part.capitalize() for part in words.split())


def _handbook(rng: random.Random, questions: list[Question]) -> str:
    parts = []
    for name in CLASSES:
        xp, points = [], 0
        for level in range(1, 13):
            xp.append(points)
            points = points * 2 if points >= 2000 else 2000 + rng.randrange(0, 600, 50)
            points += rng.randrange(0, 5000, 250) if level > 8 else 0
        rows = "\n".join(f"| {level} | {value:,} |" for level, value in enumerate(xp, start=1))
        hit_die = rng.choice([4, 6, 8, 10, 12])
        parts.append(
            f"# {_title(name)}\n\nThe {name} is a character class. A {name} gains levels by earning experience "
            f"points, as the table shows.\n\n## {_title(name)} Experience\n\n| Level | Experience points |\n"
            f"|---|---|\n{rows}\n\n## {_title(name)} Hit Dice\n\nA {name} rolls a d{hit_die} for hit points at "
            f"each level up to 9th, then adds a fixed {rng.randint(1, 3)} hit points per level."
        )
        level = rng.randint(3, 12)
        questions.append(
            Question(
                f"How many experience points does a {name} need to reach level {level}?",
                [("eval_players_handbook", f"{_title(name)} > {_title(name)} Experience")],
            )
        )
    return "\n\n".join(parts)


ASPECTS = ["Lair Actions", "Regional Effects", "Variants", "Legendary Actions", "Treasure", "Lore", "Young", "Ancient"]
POPULAR = 2  # the first kinds of each family get many sections, as famous monsters do in real books


def _monsters(rng: random.Random, questions: list[Question], families: dict[str, list[str]]) -> str:
    parts = []
    for family, kinds in families.items():
        for rank, kind in enumerate(kinds):
            name = f"{kind} {family}"
            title = _title(name)
            others = rng.sample([k for k in kinds if k != kind], k=min(3, len(kinds) - 1))
            compared = " ".join(
                f"Compared with a {other} {family}, a {name} is "
                f"{rng.choice(['larger', 'smaller', 'faster', 'slower'])} and {rng.choice(['more', 'less'])} "
                f"{rng.choice(TEMPERS)}."
                for other in others
            )
            extra = rng.sample(ASPECTS, k=6 if rank < POPULAR else rng.randint(0, 1))
            sections = "".join(
                f"\n\n## {title}: {aspect}\n\nThe {aspect.lower()} of a {name}: a {name} is known for them, and "
                f"the difference between one {name} and the next is {rng.choice(['its age', 'its hoard', 'its lair'])}."
                for aspect in extra
            )
            parts.append(
                f"# {title}\n\n## {title}: Statistics\n\nArmor class {rng.randint(-2, 7)}; hit dice "
                f"{rng.randint(2, 14)}; {rng.randint(1, 3)} attacks per round. The {name} is a "
                f"{rng.choice(SIZES)} {family}.\n\n## {title}: Habitat\n\nA {name} makes its lair in "
                f"{rng.choice(TERRAIN)}. Like every {family}, the {name} is {rng.choice(TEMPERS)} and guards its "
                f"territory.\n\n## {title}: Tactics\n\nIn battle the {name} fights as a {family} does, "
                f"{rng.choice(['from the air', 'at close quarters', 'from ambush', 'with its breath first'])}. "
                f"{compared}{sections}"
            )
            questions.append(
                Question(
                    f"What is the armor class of a {name}?",
                    [("eval_monster_manual", f"{title} > {title}: Statistics")],
                )
            )
        popular, rest = kinds[:POPULAR], kinds[POPULAR:]
        pairs = [(first, second) for first in popular for second in rest] or list(combinations(kinds, 2))
        for first, second in rng.sample(pairs, k=min(5, len(pairs))):
            a, b = f"{first} {family}", f"{second} {family}"
            questions.append(
                Question(
                    f"What is the difference between a {a} and a {b}?",
                    [("eval_monster_manual", _title(a)), ("eval_monster_manual", _title(b))],
                    comparison=True,
                )
            )
    return "\n\n".join(parts)


def _spells(rng: random.Random, questions: list[Question]) -> str:
    parts = []
    for spell in SPELLS:
        parts.append(
            f"# {_title(spell)}\n\nLevel {rng.randint(1, 9)} spell. Range: {rng.choice([0, 10, 30, 60, 120, 240])} "
            f"feet. Duration: {rng.choice(['instantaneous', '1 round per level', '10 minutes', '1 hour'])}. "
            f"The caster of {spell} {rng.choice(['points', 'gestures', 'speaks a word', 'touches a target'])} "
            f"and the spell takes effect."
        )
        questions.append(Question(f"What is the range of the {spell} spell?", [("eval_spellbook", _title(spell))]))
    return "\n\n".join(parts)
