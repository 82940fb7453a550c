from dnd_rag.logic.retrieval.chunking import chunk_document, chunk_pages

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


def test_paged_text_keeps_each_chunk_on_its_page_and_cuts_long_pages_between_lines():
    # Given a PDF-like page with no blank lines and more text than one chunk holds
    long_page = "\n".join(f"Line {n} of the owlbear entry, which goes on for a while." for n in range(40))

    chunks = chunk_pages(["Beholder\nA beholder floats.", "", long_page], "mm.pdf", max_chars=500)

    assert chunks[0].page == 1
    assert chunks[0].text == "Beholder\nA beholder floats."
    assert {c.page for c in chunks[1:]} == {3}  # the empty page yields nothing
    assert len(chunks) > 3
    assert all(len(c.text) <= 500 for c in chunks)
    assert "\n".join(c.text for c in chunks[1:]) == long_page  # nothing lost, nothing repeated
    assert [c.id for c in chunks] == [f"mm.pdf::{n:04d}" for n in range(len(chunks))]
