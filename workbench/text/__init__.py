"""Real English text for language models that train on 2 CPU cores: corpus, tokenizers, evaluation.

``corpus``: text that ships with Python (or your own files), split by document; ``tokenizer``: bytes or
a byte-level BPE trained offline; ``evaluate``: validation perplexity and bits per byte. The command
that trains a model on it is :mod:`workbench.training.text` (``python -m workbench.training.text``).
The task itself is :class:`workbench.tasks.text.TextLM` (``{"name": "text", …}`` in run configs).
"""

from .corpus import Document, load_corpus, split_documents
from .evaluate import evaluate_text, validation_windows
from .tokenizer import BPETokenizer, ByteTokenizer, tokenizer_from_json

__all__ = ["BPETokenizer", "ByteTokenizer", "Document", "evaluate_text", "load_corpus", "split_documents",
           "tokenizer_from_json", "validation_windows"]
