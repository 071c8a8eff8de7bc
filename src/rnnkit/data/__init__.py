"""Data: corpora that ship, text files, vocabularies, and truncated-BPTT batches.

The main job's data flow: a text file (``read_text``, or streamed by ``encode_corpus``) ->
a ``Vocab`` -> token ids (memory-mapped for large corpora) -> a fixed training/validation split
by blocks (``split_blocks``, ``apply_split``) -> ``StreamBatcher`` windows of ``(x, y)``.
"""

from __future__ import annotations

from rnnkit.data.batching import StreamBatcher
from rnnkit.data.corpus import default_cache_dir, encode_corpus, id_dtype
from rnnkit.data.reading import default_corpus_text, iter_text, read_text
from rnnkit.data.splits import apply_split, split_blocks
from rnnkit.data.vocab import EOS, UNK, Vocab, tokenize_words

__all__ = [
    "EOS",
    "UNK",
    "StreamBatcher",
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
