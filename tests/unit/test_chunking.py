from dnd_rag.logic.chunking import chunk_document

DOC = """# Fighter

Fighters fight.

## Experience

| Level | XP |
|---|---|
| 9 | 250,001 |

## Empty

"""


def test_chunks_follow_headings_and_keep_the_heading_line():
    chunks = chunk_document(DOC, "fighter.md")

    assert [c.title for c in chunks] == ["Fighter", "Fighter > Experience"]
    assert chunks[1].text.startswith("## Experience")
    assert "250,001" in chunks[1].text


def test_chunk_ids_are_stable_so_reingesting_replaces():
    assert [c.id for c in chunk_document(DOC, "fighter.md")] == [c.id for c in chunk_document(DOC, "fighter.md")]
    assert chunk_document(DOC, "fighter.md")[0].id == "fighter.md::0000"


def test_long_sections_split_on_paragraphs():
    body = "\n\n".join(f"Paragraph {i} " + "word " * 50 for i in range(10))

    chunks = chunk_document(f"# Long\n\n{body}", "long.md", max_chars=600)

    assert len(chunks) > 1
    assert all(len(c.text) <= 600 for c in chunks)
    assert "Paragraph 9" in chunks[-1].text


def test_text_without_headings_is_one_chunk():
    assert len(chunk_document("Just some rules text.", "notes.txt")) == 1
