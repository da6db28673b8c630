"""Sentence sketches that survive rewording: what links a paraphrasing campaign's keys.

A paraphrasing extractor never sends the same prompt twice: the ask for the full reasoning is
reworded each time (clause order, synonyms, filler, typos, many languages) and wrapped around
a problem that is itself new. The whole-prompt template and its near-duplicate bands
(`template.py`) then differ on every request, because the unique problem dominates the text.
What the campaign keeps is its asks: the same few sentences, reworded. So the prompt is cut
into sentences and clauses, and each long enough one is sketched on its own:

* words are lower-cased and cut to their first ``STEM_CHARS`` characters, so inflections and
  most typos (which fall late in a word) leave the stem alone; English function words (the
  template's stop words) are dropped;
* a clause's sketch is order-free (a set of stems), so reordering within it costs nothing;
* MinHash over the stem hashes gives ``BANDS`` bands of two rows (the two smallest values
  under each of ``BANDS`` hash functions, cut from one digest per stem); two rewordings of one
  clause share a band with probability about 1-(1-J**2)**BANDS for Jaccard similarity J of
  their stem sets (0.68 at J=0.5, 0.23 at J=0.25). A clause holds too few stems to fill the
  bins of one-permutation MinHash (template.py's bands), so each band sees the whole clause.

Only the first and last ``EDGE_SEGMENTS`` clauses are sketched, because asks sit around the
problem rather than inside it, and that bounds the cost: at most ``EDGE_SEGMENTS * 2 * BANDS``
keys per request. A sketch key is ``"r"`` and 16 hex digits (the band in the top bits), so it
cannot be mistaken for a template fingerprint.

No scripts are special-cased except those written without spaces (Chinese, Japanese), whose
words are taken as overlapping character pairs, and sentences that hold a number are skipped as
the problem's rather than the ask's. The sketch links keys; it proves nothing by itself, since
many honest users phrase the same request alike: the policy reads it through
`paraphrase_accounts` and `paraphrase_networks`, next to behavioural evidence. Which requests
are sketched at all (those that got mostly reasoning back) is decided in `request.py`.
"""

from __future__ import annotations

import re
from hashlib import blake2b
from operator import itemgetter

from enforcer.engine.features.template import HAS_CJK, MAX_TEXT_CHARS, STOP_WORDS

__all__ = [
    "BANDS",
    "EDGE_SEGMENTS",
    "MIN_STEMS",
    "SKETCH_PREFIX",
    "STEM_CHARS",
    "reworded_sketches",
]

STEM_CHARS = 4
MIN_WORD_CHARS = 3  # shorter words are mostly particles and the debris of contractions
BANDS = 4
EDGE_SEGMENTS = 1
MIN_STEMS = 5  # distinct content stems; shorter clauses ("thanks in advance") link anyone
SKETCH_PREFIX = "r"  # template fingerprints are plain hex, system prompts' start with "s"

# Sentence and clause ends across scripts: Latin, CJK, Arabic, Devanagari.
_SENTENCE_END = re.compile(r"[.!?\n。！？؟।]+")
_CLAUSE_END = re.compile(r"[;:,，、；：]+")
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"[^\W\d_]+")

_MASK30 = (1 << 30) - 1
_BAND_VALUES = tuple(map(itemgetter, range(BANDS)))
_STEM_HASH: dict[str, tuple[int, ...]] = {}
_STEM_CACHE_MAX = 1 << 16  # cleared wholesale when full; stems are a small vocabulary


def _hashes(stem: str) -> tuple[int, ...]:
    """``BANDS`` independent 30-bit hashes of a stem, cut from one digest."""
    h = _STEM_HASH.get(stem)
    if h is None:
        if len(_STEM_HASH) >= _STEM_CACHE_MAX:
            _STEM_HASH.clear()
        digest = blake2b(stem.encode("utf-8", "surrogatepass"), digest_size=4 * BANDS).digest()
        h = _STEM_HASH[stem] = tuple(
            int.from_bytes(digest[4 * b : 4 * b + 4], "little") & _MASK30 for b in range(BANDS)
        )
    return h


def _stems(clause: str) -> set[str]:
    stems: set[str] = set()
    for word in _WORD.findall(clause):
        if len(word) < MIN_WORD_CHARS or word in STOP_WORDS:
            continue
        if not word.isascii() and HAS_CJK.search(word):  # (a CJK run is one long "word")
            stems.update(map(str.__add__, word, word[1:]))  # overlapping character pairs
        else:
            stems.add(word[:STEM_CHARS])
    return stems


def _clauses(prompt: str) -> list[set[str]]:
    # A sentence with a number in it states the problem ("it grows by 5 each day; how many
    # remain?"); asks carry no slots. Problems share their connective words ("how many ...
    # remain after"), which would link every homework question to every other.
    clauses = [
        clause
        for sentence in _SENTENCE_END.split(prompt.lower())
        if not _DIGIT.search(sentence)
        for clause in _CLAUSE_END.split(sentence)
    ]
    found = [s for s in map(_stems, clauses) if len(s) >= MIN_STEMS]
    if len(found) > 2 * EDGE_SEGMENTS:
        return found[:EDGE_SEGMENTS] + found[-EDGE_SEGMENTS:]
    return found


def reworded_sketches(prompt: str | None) -> tuple[str, ...]:
    """Sketch keys of the prompt's edge clauses: rewordings of one clause share a key."""
    if not prompt:
        return ()
    keys: set[str] = set()
    for stems in _clauses(prompt[:MAX_TEXT_CHARS]):
        hashed = list(map(_hashes, stems))
        for band, value in enumerate(_BAND_VALUES):
            first, second = sorted(map(value, hashed))[:2]
            keys.add(f"{SKETCH_PREFIX}{band << 60 | first << 30 | second:016x}")
    return tuple(sorted(keys))  # in a fixed order, so that a replay tracks them alike
