"""Chunking: split a document into sentence-aligned, token-bounded chunks that overlap.

Token counts use the embedding model's own tokenizer (MiniLM WordPiece), so a chunk fits the model
window. Sentences are packed greedily up to ``max_tokens``; the next chunk starts with the previous
chunk's last sentences worth at most ``overlap_tokens``, so a fact spanning a boundary stays whole in
one chunk. A single sentence longer than ``max_tokens`` is cut at token boundaries (with the same
overlap), keeping the original characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

TOKENIZER_PATH = Path(__file__).resolve().parent.parent / "embedding" / "assets" / "tokenizer.json"

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace and
# an upper-case letter, digit or opening quote/bracket; or at a blank line. Abbreviations such as
# "e.g. the" are kept whole because the next word is lower case.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n\s*\n")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk: its position in the document, text and character span."""

    index: int
    text: str
    start: int
    end: int
    tokens: int


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    tokens: int
    alone: bool = False
    """A window cut from an over-long sentence: it already overlaps its neighbours, so it is a
    chunk of its own."""


@lru_cache(maxsize=4)
def load_tokenizer(path: Path = TOKENIZER_PATH) -> Tokenizer:
    """The MiniLM tokenizer without padding or truncation (we count every token)."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


# Titles and abbreviations whose period does not end a sentence even before a capital.
_ABBREVIATIONS = frozenset(
    re.findall(
        r"\w+",
        "mr mrs ms dr prof sr jr st vs etc fig figs eq eqs no vol al approx dept est inc ltd co corp "
        "jan feb mar apr jun jul aug sep sept oct nov dec",
    )
)
_LAST_WORD = re.compile(r"(\w+)\.$")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace between them excluded)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        word = _LAST_WORD.search(text, max(start, match.start() - 12), match.start())
        if word is not None and word.group(1).lower() in _ABBREVIATIONS:
            continue
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in (_strip(text, s, e) for s, e in spans) if e > s]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


class Chunker:
    """Sentence-aware, token-bounded chunking with overlap.

    Args:
        max_tokens: most tokens in a chunk (special tokens not counted).
        overlap_tokens: at most this many tokens of the previous chunk start the next one.
        tokenizer: a ``tokenizers.Tokenizer``; the shipped MiniLM one by default.
    """

    def __init__(self, max_tokens: int = 200, overlap_tokens: int = 40, tokenizer: Tokenizer | None = None) -> None:
        if not 0 <= overlap_tokens < max_tokens:
            raise ValueError("overlap_tokens must be >= 0 and smaller than max_tokens")
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self._tokenizer = tokenizer or load_tokenizer()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def chunk(self, text: str) -> list[Chunk]:
        """Chunks of ``text`` in order; ``[]`` for blank text."""
        pieces = self._pieces(text)
        chunks: list[Chunk] = []
        i = 0
        while i < len(pieces):
            j, total = i + 1, pieces[i].tokens
            while (
                not pieces[i].alone
                and j < len(pieces)
                and not pieces[j].alone
                and total + pieces[j].tokens <= self.max_tokens
            ):
                total += pieces[j].tokens
                j += 1
            start, end = pieces[i].start, pieces[j - 1].end
            chunks.append(Chunk(len(chunks), text[start:end], start, end, total))
            if j >= len(pieces):
                break
            # Back up over trailing pieces that fit in the overlap, but always move forward.
            k, carried = j, 0
            while (
                k - 1 > i
                and not pieces[k - 1].alone
                and not pieces[j].alone
                and carried + pieces[k - 1].tokens <= self.overlap_tokens
            ):
                carried += pieces[k - 1].tokens
                k -= 1
            i = k
        return chunks

    def _pieces(self, text: str) -> list[_Piece]:
        """Sentences, with any sentence over ``max_tokens`` cut into overlapping token windows."""
        pieces: list[_Piece] = []
        for start, end in split_sentences(text):
            encoding = self._tokenizer.encode(text[start:end], add_special_tokens=False)
            n = len(encoding.ids)
            if n <= self.max_tokens:
                pieces.append(_Piece(start, end, n))
                continue
            offsets = encoding.offsets
            step = self.max_tokens - self.overlap_tokens
            for first in range(0, n, step):
                last = min(first + self.max_tokens, n)
                pieces.append(_Piece(start + offsets[first][0], start + offsets[last - 1][1], last - first, alone=True))
                if last == n:
                    break
        return pieces
