"""article-qa: extractive question answering with cited spans over a folder of articles."""

__version__ = "0.1.0"
