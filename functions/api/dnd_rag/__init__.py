"""dnd_rag: a rules question-answering API (retrieval-augmented generation) for AWS Lambda."""

__version__ = "0.1.0"
SERVICE_NAME = "dnd_rag"
