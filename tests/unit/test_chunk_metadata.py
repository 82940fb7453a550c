"""File, section and page read from the metadata of LangChain, LlamaIndex and Docling pipelines."""

import json

import pytest

from dnd_rag.logic.retrieval.chunk_metadata import first_text, page, section
from dnd_rag.settings import DEFAULT_PAGE_KEYS, DEFAULT_SOURCE_KEYS, DEFAULT_TITLE_KEYS

DOCLING = {
    "schema_name": "docling_core.transforms.chunker.DocMeta",
    "headings": ["Monsters", "Beholder"],
    "doc_items": [{"self_ref": "#/texts/12", "prov": [{"page_no": 27, "bbox": {"l": 1.0}}]}],
}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"source": "mm.pdf", "page": 26}, ("mm.pdf", "", 26)),  # LangChain PyPDFLoader
        ({"file_name": "mm.pdf", "page_label": "27"}, ("mm.pdf", "", 27)),  # LlamaIndex
        ({"source": "mm.pdf", "dl_meta": json.dumps(DOCLING)}, ("mm.pdf", "Monsters > Beholder", 27)),  # Docling
        ({"source": "mm.pdf", "dl_meta": DOCLING}, ("mm.pdf", "Monsters > Beholder", 27)),
        ({"filename": "mm.pdf", "headings": ["A", "B"], "page_no": 3.0}, ("mm.pdf", "A > B", 3)),
        ({"source": "x", "page": "iv", "dl_meta": "{not json"}, ("x", "", None)),
        ({"page": True}, ("", "", None)),
    ],
)
def test_common_pipelines_metadata(metadata, expected):
    got = (
        first_text(metadata, DEFAULT_SOURCE_KEYS),
        section(metadata, DEFAULT_TITLE_KEYS),
        page(metadata, DEFAULT_PAGE_KEYS),
    )

    assert got == expected


def test_configured_keys_win_in_their_order():
    metadata = {"doc": "a.pdf", "source": "b.pdf", "pg": 5, "page": 9}

    assert first_text(metadata, ("doc", "source")) == "a.pdf"
    assert page(metadata, ("pg", "page")) == 5
