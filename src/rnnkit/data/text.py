"""Text files -> vocabulary -> token ids, for corpora of any size: the names of four modules.

The first stage of the main job (DESIGN.md, "The main job, as data flows"), split by concern:

- ``rnnkit.data.reading``: UTF-8 text files, whole or streamed in chunks; the bundled corpus.
- ``rnnkit.data.vocab``: ``Vocab`` (characters or words) and ``tokenize_words``.
- ``rnnkit.data.corpus``: ``encode_corpus``, a file as token ids memory-mapped from a cache.
- ``rnnkit.data.splits``: the fixed training/validation split by blocks.

This module re-exports their public names, so ``from rnnkit.data.text import Vocab`` keeps
working.
"""

from __future__ import annotations

from rnnkit.data.corpus import WORD_CHUNK_SIZE, default_cache_dir, encode_corpus, id_dtype
from rnnkit.data.reading import (
    BINARY_SNIFF,
    CHUNK_SIZE,
    DEFAULT_CORPUS,
    PathLike,
    default_corpus_text,
    iter_text,
    read_text,
)
from rnnkit.data.splits import Ranges, apply_split, split_blocks
from rnnkit.data.vocab import EOS, UNK, Level, Vocab, tokenize_words

__all__ = [
    "BINARY_SNIFF",
    "CHUNK_SIZE",
    "DEFAULT_CORPUS",
    "EOS",
    "UNK",
    "WORD_CHUNK_SIZE",
    "Level",
    "PathLike",
    "Ranges",
    "Vocab",
    "apply_split",
    "default_cache_dir",
    "default_corpus_text",
    "encode_corpus",
    "id_dtype",
    "iter_text",
    "read_text",
    "split_blocks",
    "tokenize_words",
]
