"""VADER's compound score, by the rules of ``vaderSentiment`` 3.3.2 without its per-word overhead.

``SentimentIntensityAnalyzer.polarity_scores`` rebuilds the text character by character to replace
emoji and lower-cases the whole token list again for every negation and idiom check (words × lexicon
hits). ``Vader.compound`` applies the same rules in the same order to one lower-cased token list, so
its result is the library's ``compound`` exactly (``tests/insights/test_vader.py`` compares them on
real tweets and generated texts); the rare contrastive "but" still goes through the library's own
``_but_check``. About 4× cheaper per text.
"""

from __future__ import annotations

import string

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    normalize,
)

_NEGATE = frozenset(NEGATE)
_PUNCTUATION = string.punctuation
_SO_THIS = ("so", "this")
# Every word of a multi-word idiom or booster: a window without any of them cannot match one.
_IDIOM_WORDS = frozenset(w for key in (*SPECIAL_CASES, *BOOSTER_DICT) if " " in key for w in key.split())


def _negated(word: str) -> bool:
    return word in _NEGATE or "n't" in word


class Vader:
    """VADER with ``extra`` lexicon entries (added to, or overriding, the library's lexicon)."""

    def __init__(self, extra: dict[str, float] | None = None) -> None:
        self.library = SentimentIntensityAnalyzer()
        self.lexicon: dict[str, float] = self.library.lexicon
        if extra:
            self.lexicon.update(extra)
        self._emoji: dict[str, str] = self.library.emojis
        self._emoji_chars = frozenset(self._emoji)
        # every emoji key is non-ASCII, so an ASCII text (most of them) skips the character scan
        self._ascii_safe = not any(k.isascii() for k in self._emoji)

    def _describe_emoji(self, text: str) -> str:
        # the library's substitution, kept exactly (spacing included); only run when an emoji is present
        out: list[str] = []
        prev_space = True
        for ch in text:
            if ch in self._emoji:
                if not prev_space:
                    out.append(" ")
                out.append(self._emoji[ch])
                prev_space = False
            else:
                out.append(ch)
                prev_space = ch == " "
        return "".join(out)

    def compound(self, text: str) -> float:
        """``polarity_scores(text)["compound"]`` of the library, in [-1, 1], rounded to 4 places."""
        if not (self._ascii_safe and text.isascii()) and not self._emoji_chars.isdisjoint(text):
            text = self._describe_emoji(text)
        text = text.strip()
        words = [t if len(s := t.strip(_PUNCTUATION)) <= 2 else s for t in text.split()]
        lower = [w.lower() for w in words]
        lexicon = self.lexicon
        hits = [i for i, lw in enumerate(lower) if lw in lexicon]
        if not hits:
            return 0.0  # every valence is 0, and so is the library's compound
        n = len(words)
        upper = sum(1 for w in words if w.isupper())
        cap_diff = 0 < n - upper < n
        # words outside the lexicon (and boosters, "kind of") add 0: only the hits need scoring
        valences = {
            i: self._valence(lexicon[lower[i]], words, lower, i, cap_diff)
            for i in hits
            if lower[i] not in BOOSTER_DICT and not (lower[i] == "kind" and i < n - 1 and lower[i + 1] == "of")
        }
        if "but" in lower:
            full: list[float] = [valences.get(i, 0) for i in range(n)]
            sentiments = SentimentIntensityAnalyzer._but_check(words, full)
        else:
            sentiments = list(valences.values())
        total = float(sum(sentiments))
        emphasis = min(text.count("!"), 4) * 0.292
        questions = text.count("?")
        emphasis += (questions * 0.18 if questions <= 3 else 0.96) if questions > 1 else 0
        if total > 0:
            total += emphasis
        elif total < 0:
            total -= emphasis
        return round(float(normalize(total)), 4)

    def _valence(self, valence: float, words: list[str], lower: list[str], i: int, cap_diff: bool) -> float:
        """``SentimentIntensityAnalyzer.sentiment_valence`` for the lexicon word at ``i``."""
        lexicon = self.lexicon
        lw = lower[i]
        n = len(lower)
        if lw == "no" and i != n - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if (
            (i > 0 and lower[i - 1] == "no")
            or (i > 1 and lower[i - 2] == "no")
            or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
        ):
            valence = lexicon[lw] * N_SCALAR
        if cap_diff and words[i].isupper():
            valence = valence + C_INCR if valence > 0 else valence - C_INCR
        for start_i in range(3):
            j = i - (start_i + 1)
            if j < 0 or lower[j] in lexicon:
                continue
            scalar = 0.0
            booster = BOOSTER_DICT.get(lower[j])
            if booster is not None:
                scalar = booster
                if valence < 0:
                    scalar *= -1
                if words[j].isupper() and cap_diff:
                    scalar = scalar + C_INCR if valence > 0 else scalar - C_INCR
                if start_i == 1 and scalar != 0:
                    scalar = scalar * 0.95
                if start_i == 2 and scalar != 0:
                    scalar = scalar * 0.9
            valence = valence + scalar
            valence = _negation(valence, lower, start_i, i)
            if start_i == 2 and not _IDIOM_WORDS.isdisjoint(lower[i - 3 : i + 3]):
                valence = _idioms(valence, lower, i)
        if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * N_SCALAR
        elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            valence = valence * N_SCALAR
        return valence


def _negation(valence: float, lower: list[str], start_i: int, i: int) -> float:
    """``SentimentIntensityAnalyzer._negation_check``."""
    if start_i == 0:
        if _negated(lower[i - 1]):
            valence = valence * N_SCALAR
    elif start_i == 1:
        if lower[i - 2] == "never" and lower[i - 1] in _SO_THIS:
            valence = valence * 1.25
        elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
            pass
        elif _negated(lower[i - 2]):
            valence = valence * N_SCALAR
    else:
        if (lower[i - 3] == "never" and lower[i - 2] in _SO_THIS) or lower[i - 1] in _SO_THIS:
            valence = valence * 1.25
        elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
            pass
        elif _negated(lower[i - 3]):
            valence = valence * N_SCALAR
    return valence


def _idioms(valence: float, lower: list[str], i: int) -> float:
    """``SentimentIntensityAnalyzer._special_idioms_check`` (called with ``i > 2``)."""
    onezero = f"{lower[i - 1]} {lower[i]}"
    twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
    twoone = f"{lower[i - 2]} {lower[i - 1]}"
    threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
    threetwo = f"{lower[i - 3]} {lower[i - 2]}"
    for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    n = len(lower)
    if n - 1 > i:
        zeroone = f"{lower[i]} {lower[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if n - 1 > i + 1:
        zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for ngram in (threetwoone, threetwo, twoone):
        if ngram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[ngram]
    return valence
