"""Prompt template skeletons, exact fingerprints and near-duplicate signatures.

Distillation campaigns fill one prompt skeleton with generated problems (math,
code, logic) and swap synonyms so the requests look varied. Counting requests per
key or IP never sees that; counting per *template* does. This module turns one
request's text into:

* a skeleton: the prompt with its slots (numbers, quoted strings, code, URLs,
  e-mails, names, ids) masked, so slot-filled variants become identical;
* an exact fingerprint of the skeleton (system prompt and prompt together);
* near-duplicate band keys (MinHash LSH over skeleton bigrams) so that variants
  that differ by a few swapped words, not only by slots, still share a key.

Everything is pure and bounded: text is cut at ``MAX_TEXT_CHARS`` before any regex
runs, so a hostile 1 MB prompt costs the same as a 4 kB one. The hot path avoids
per-token Python work where a C-level ``map``/``sorted`` can do it, because this
runs on every gateway event.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from hashlib import blake2b
from itertools import islice, repeat
from operator import add, xor
from typing import NamedTuple

__all__ = [
    "HAS_CJK",
    "STOP_WORDS",
    "BANDS",
    "MAX_TEXT_CHARS",
    "ROWS_PER_BAND",
    "TemplateFeatures",
    "hamming",
    "near_duplicate_bands",
    "simhash64",
    "skeleton",
    "template_features",
    "template_fingerprint",
]

MAX_TEXT_CHARS = 4000
"""Characters of prompt and of system prompt that are read; caps per-event cost."""

# --- skeleton ---------------------------------------------------------------------
# Order matters: code first (it holds quotes, numbers and URLs), then spans that may
# contain digits as a whole (URLs, e-mails, quotes, ids), then bare numbers, then
# names (needs the original case), then case folding. Cheap substring guards skip
# regexes that cannot match, which is most of them for most prompts.

_FENCED_CODE = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]{1,400}`")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DOUBLE_QUOTED = re.compile(
    r'"[^"\n]{0,400}"'
    r"|“[^”]{0,400}”"
    r"|‘[^’\n]{0,400}’"
    r"|„[^“”\n]{0,400}[“”]"
    r"|«[^»]{0,400}»"
    r"|「[^」]{0,400}」"
    r"|『[^』]{0,400}』"
)
# A single quote opens a quotation only when not glued to a word, so the apostrophes
# in "let's" and "don't" stay. The look-behind sits after the literal so the regex
# engine can still jump between quote characters.
_SINGLE_QUOTED = re.compile(r"'(?<![\w']')[^'\n]{1,400}'(?!\w)")
# Hex, base64, UUIDs, API ids: long runs of id characters that contain a digit.
# ASCII only, so a long run of CJK text is never mistaken for an id.
_LONG_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_+/=-])(?=[A-Za-z_+/=-]*[0-9])[A-Za-z0-9_+/=-]{16,}(?![A-Za-z0-9_+/=-])"
)
_LONG_TOKEN_MIN = 16
# \d covers full-width and other Unicode digits; the look-behind drops a trailing
# sentence "." or "," from the number.
_NUMBER = re.compile(r"[\d½⅓⅔¼¾⅛][\d.,:]*(?<![.,:])")
# The same for ASCII text, where \d can only be 0-9: a range is quicker to test.
_ASCII_NUMBER = re.compile(r"[0-9][0-9.,:]*(?<![.,:])")
_ASCII_DIGITS = "0123456789"
# "37*12" and "37*12+5" fill the same slot: one <num>.
_NUM_EXPR = re.compile(r"<num>(?:\s*[-+*/×÷^%]\s*<num>)+")
_UPPER = "A-ZÀ-ÖØ-ÞА-ЯЁ"
_LOWER = "a-zß-öø-ÿа-яё"
# A capitalised word right after a lower-case word, digit or comma is taken for a
# name in mid-sentence. Heuristic: sentence-initial names stay, German nouns go.
_NAME = re.compile(rf" (?<=[{_LOWER}0-9,;>)] )[{_UPPER}][{_LOWER}]+(?:[ -][{_UPPER}][{_LOWER}]+)*")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAS_CJK = _HAS_CJK = re.compile(f"[{_CJK}]")  # scripts written without spaces
# Placeholders, runs of non-CJK letters/digits, or one CJK character: scripts written
# without spaces are shingled by characters, the rest by words.
_CJK_AWARE_TOKEN = re.compile(rf"<[a-z]+>|[^\W{_CJK}]+|[{_CJK}]")


def _skeleton_tokens(text: str | None) -> list[str]:
    if not text:
        return []
    s = text[:MAX_TEXT_CHARS]
    if "`" in s:
        s = _FENCED_CODE.sub(" <code> ", s)
        s = _INLINE_CODE.sub("<code>", s)
    if "://" in s or "www." in s or "WWW." in s:
        s = _URL.sub("<url>", s)
    if "@" in s:
        s = _EMAIL.sub("<email>", s)
    if '"' in s or not s.isascii():  # the other quote marks are all non-ASCII
        s = _DOUBLE_QUOTED.sub("<str>", s)
    if "'" in s:
        s = _SINGLE_QUOTED.sub("<str>", s)
    if s.isspace() or not s:
        return []
    # Ids and numbers need a digit, which most prompts lack, and an id is one long
    # whitespace-free run: both checks cost less than running the regexes.
    ascii_digit = any(map(s.__contains__, _ASCII_DIGITS))
    if ascii_digit and max(map(len, s.split())) >= _LONG_TOKEN_MIN:
        s = _LONG_TOKEN.sub("<tok>", s)
    if not s.isascii():
        s = _NUMBER.sub("<num>", s)
    elif ascii_digit:
        s = _ASCII_NUMBER.sub("<num>", s)
    if "<num>" in s:
        s = _NUM_EXPR.sub("<num>", s)
    s = _NAME.sub(" <name>", s)
    return s.lower().split()


def skeleton(text: str | None) -> str:
    """Reduce a prompt to its template skeleton.

    Slot contents become placeholders (``<code>``, ``<url>``, ``<email>``, ``<str>``,
    ``<tok>``, ``<num>``, ``<name>``), case is folded and whitespace collapsed, so two
    requests built from one template by filling slots get the same skeleton. Only the
    first ``MAX_TEXT_CHARS`` characters are read.
    """
    return " ".join(_skeleton_tokens(text))


class _SystemTemplate(NamedTuple):
    skeleton: str
    shingles: list[str]  # never mutated: shared by every request with this system prompt
    fingerprint: str  # of this system prompt with an empty prompt


# System prompts repeat verbatim across a client's requests (that is what a system
# prompt is), so what is derived from them alone is cached; prompts are not.
_SYSTEM_CACHE: dict[str, _SystemTemplate] = {}
_SYSTEM_CACHE_MAX = 1024
_NO_SYSTEM = _SystemTemplate("", [], "")  # its fingerprint is never read


def _system_template(system: str | None) -> _SystemTemplate:
    if not system:
        return _NO_SYSTEM
    key = system[:MAX_TEXT_CHARS]
    hit = _SYSTEM_CACHE.get(key)
    if hit is None:
        tokens = _skeleton_tokens(key)
        skel = " ".join(tokens)
        hit = _SystemTemplate(
            skel, _shingle_tokens(skel, tokens), _fingerprint_of_skeletons(skel, "")
        )
        if len(_SYSTEM_CACHE) >= _SYSTEM_CACHE_MAX:
            _SYSTEM_CACHE.clear()
        _SYSTEM_CACHE[key] = hit
    return hit


def _hex64(data: str) -> str:
    # surrogatepass: a lone surrogate in client JSON must not crash the worker.
    return blake2b(data.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _fingerprint_of_skeletons(system_skel: str, prompt_skel: str) -> str:
    return _hex64(system_skel + "\x1f" + prompt_skel)


def template_fingerprint(prompt: str | None, system: str | None) -> str:
    """Stable 16-hex-char id of the (system, prompt) skeleton pair.

    Equal fingerprints mean "same template, different slot values". The value does
    not depend on the process or Python version, so workers can share and store it.
    """
    if system and not prompt:
        return _system_template(system).fingerprint  # cached: asked for on every request
    return _fingerprint_of_skeletons(_system_template(system).skeleton, skeleton(prompt))


# --- shingle hashes ------------------------------------------------------------------
# Tokens are hashed once (blake2b, cached: vocabularies are Zipfian, so the hit rate
# stays high even for varied traffic) into two independent 30-bit halves; a bigram's
# hash is first-half(a) XOR second-half(b), computed for the whole prompt by one
# C-level map. 30 bits keeps every value a single-digit Python int, which roughly
# halves the cost of the sort and dict steps below compared with 64-bit values.
# Bigrams rather than longer n-grams because a synonym swap then changes only two
# shingles.

_MASK30 = (1 << 30) - 1
_MASK64 = (1 << 64) - 1
_SEPARATOR = "\x1f"  # between system and prompt tokens
_LEFT_HASH: dict[str, int] = {}
_RIGHT_HASH: dict[str, int] = {}
_WIDE_HASH: dict[str, int] = {}
_TOKEN_CACHE_MAX = 1 << 17  # a few tens of MB worst case; cleared wholesale when full


def _hash_token(token: str) -> tuple[int, int, int]:
    """Hash ``token`` (left half, right half, 64-bit wide) and cache the three values."""
    digest = blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    if len(_WIDE_HASH) >= _TOKEN_CACHE_MAX:
        _LEFT_HASH.clear()
        _RIGHT_HASH.clear()
        _WIDE_HASH.clear()
    low = int.from_bytes(digest[:8], "little")
    left = _LEFT_HASH[token] = low & _MASK30
    right = _RIGHT_HASH[token] = (low >> 30) & _MASK30
    wide = _WIDE_HASH[token] = int.from_bytes(digest[8:], "little")
    return left, right, wide


def _shingle_tokens(skel: str, skel_tokens: list[str]) -> list[str]:
    """The units shingled: ``skel_tokens`` (whose join is ``skel``), or characters for CJK."""
    if skel.isascii() or not _HAS_CJK.search(skel):
        return skel_tokens
    return _CJK_AWARE_TOKEN.findall(skel)


def _bigram_hashes(tokens: list[str]) -> set[int]:
    """Distinct 30-bit hashes of adjacent token pairs (of the token, if only one)."""
    if len(tokens) < 2:
        return set(_token_halves(tokens)[0])
    try:
        # map stops at the shorter input, so this pairs each token with the next.
        return set(
            map(
                xor,
                map(_LEFT_HASH.__getitem__, tokens),
                map(_RIGHT_HASH.__getitem__, islice(tokens, 1, None)),
            )
        )
    except KeyError:  # a token not seen yet: rare once the vocabulary is warm
        lefts, rights = _token_halves(tokens)
        return set(map(xor, lefts, islice(rights, 1, None)))


def _token_halves(tokens: list[str]) -> tuple[list[int], list[int]]:
    """Left and right hash halves of each token, hashing the ones not cached yet."""
    for token in set(tokens).difference(_LEFT_HASH):
        _hash_token(token)
    try:
        return list(map(_LEFT_HASH.__getitem__, tokens)), list(map(_RIGHT_HASH.__getitem__, tokens))
    except KeyError:
        # Hashing filled the cache and it was cleared half-way through this prompt: keep
        # each value here instead of re-reading the cache.
        halves = [_hash_token(token) for token in tokens]
        return [h[0] for h in halves], [h[1] for h in halves]


def _pair_tokens(system: _SystemTemplate, prompt_skel: str, prompt_tokens: list[str]) -> list[str]:
    if not prompt_tokens:
        return system.shingles
    prompt_shingles = _shingle_tokens(prompt_skel, prompt_tokens)
    if not system.shingles:
        return prompt_shingles
    return [*system.shingles, _SEPARATOR, *prompt_shingles]


# --- SimHash ------------------------------------------------------------------------
# Bitwise majority vote done with big-int arithmetic: each shingle hash is "spread" so
# bit i sits at the bottom of a 16-bit lane; summing spread ints counts every bit
# position at C speed, and a bias added to every lane turns "count > n/2" into the
# lane's top bit.

_LANE = 16
_LANE_ONES = sum(1 << (_LANE * i) for i in range(64))
_LANE_TOPS = _LANE_ONES << (_LANE - 1)
_MAX_VOTES = (1 << (_LANE - 1)) - 1
_BIGRAM_MULT = 0x9E3779B97F4A7C15  # odd, so the multiply is a bijection mod 2**64
_BITS_TO_BYTES = bytes.maketrans(b"01", b"\x00\x01")
_BYTES_TO_BITS = bytes.maketrans(b"\x00\x01", b"01")


def _spread(h: int) -> int:
    lanes = bytearray(64 * _LANE // 8)
    lanes[:: _LANE // 8] = f"{h:064b}".encode()[::-1].translate(_BITS_TO_BYTES)
    return int.from_bytes(lanes, "little")


def _wide_bigram_hashes(tokens: list[str]) -> list[int]:
    wide = [_WIDE_HASH.get(t) or _hash_token(t)[2] for t in tokens]
    if len(wide) < 2:
        return wide
    return [((a * _BIGRAM_MULT) ^ b) & _MASK64 for a, b in zip(wide, wide[1:], strict=False)]


def _simhash_of_hashes(hashes: list[int]) -> int:
    n = min(len(hashes), _MAX_VOTES)
    if n == 0:
        return 0
    total = sum(map(_spread, hashes[:n]))
    bias = (_MAX_VOTES - n // 2) * _LANE_ONES
    tops = ((total + bias) & _LANE_TOPS) >> (_LANE - 1)
    bits = tops.to_bytes(64 * _LANE // 8, "little")[:: _LANE // 8]
    return int(bits[::-1].translate(_BYTES_TO_BITS), 2)


def simhash64(text: str | None) -> int:
    """64-bit SimHash of the bigram shingles of ``skeleton(text)``.

    Close texts differ in few bits (see ``hamming``), which suits ranking how alike
    two given prompts are. Grouping uses MinHash bands instead
    (``near_duplicate_bands``): measured on short prompts, SimHash bands either miss
    synonym-swapped variants or collide on unrelated text.
    """
    tokens = _skeleton_tokens(text)
    return _simhash_of_hashes(_wide_bigram_hashes(_shingle_tokens(" ".join(tokens), tokens)))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two SimHashes."""
    return (a ^ b).bit_count()


# --- MinHash LSH bands ---------------------------------------------------------------
# One-permutation MinHash: the top bits of a shingle hash pick a bin, the hash is the
# value, and the minimum per bin comes from one C-level sort instead of one hash
# function per row. A band is computed only when all its bins hold a shingle: filling
# empty bins from neighbours (densification) made short prompts' bands hinge on one
# common bigram and collide across hundreds of unrelated users in simulation, so a
# band that cannot be filled falls back to the exact fingerprint instead. Bigrams
# made only of stop words ("of the", "can you") are dropped for the same reason:
# they are in everybody's prompts.
#
# Two texts share a given band with probability ~J**ROWS for Jaccard similarity J of
# their bigram sets, and some band with ~1-(1-J**ROWS)**BANDS: with 8 bands of 2 rows
# ~0.52 at J=0.3, ~0.87 at J=0.5, ~0.08 at J=0.1, ~0.003 at J=0.02. 8x2 was chosen by
# measurement on simulated traffic against 16x2, 4x4, 8x4, 16x1 and 32x1: one row lets
# unrelated prompts collide on a single common bigram (8% of random benign pairs at
# 16x1 against 0.4-0.8% here), four rows lose synonym-swapped variants, and more bands
# leave more bins empty on short prompts while adding keys for the window store.

BANDS = 8
ROWS_PER_BAND = 2
_BINS = BANDS * ROWS_PER_BAND
_BIN_SHIFT = 30 - (_BINS - 1).bit_length()
assert 1 << (30 - _BIN_SHIFT) == _BINS, "bins must be a power of two"
assert ROWS_PER_BAND == 2, "band keys below are laid out for two 30-bit rows"
_MIN_SHINGLES = 5  # distinct content bigrams; below this chance collisions are too likely
_BAND_PREFIXES = tuple(f"b{b}:" for b in range(BANDS))
_EXACT_PREFIXES = tuple(f"b{b}:=" for b in range(BANDS))
_BIN_FLOORS = tuple(b << _BIN_SHIFT for b in range(_BINS + 1))  # smallest hash of each bin
_STOP_WORDS_TEXT = (
    "a an the of to in on for with and or is are was be it this that these what how why do "
    "does did i you my me can could would should will please your we our at by from as if not "
    "no so but about into than then there their they he she his her its have has had which who "
    "when where any some all just also me? it? i'm it's"
)
STOP_WORDS = _STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())  # English function words


def _stop_bigrams() -> frozenset[int]:
    halves = {w: _hash_token(w) for w in _STOP_WORDS}
    return frozenset(halves[a][0] ^ halves[b][1] for a in _STOP_WORDS for b in _STOP_WORDS)


_STOP_BIGRAMS = _stop_bigrams()


def _bands_of_hashes(distinct: set[int], fingerprint: str) -> tuple[str, ...]:
    """Band keys from the distinct shingle hashes (``distinct`` is consumed)."""
    distinct -= _STOP_BIGRAMS
    if len(distinct) < _MIN_SHINGLES:
        return _exact_bands(fingerprint)
    ascending = sorted(distinct)
    # The hashes of one bin (their top bits) form a run of the sorted list: bisection
    # finds where each run starts, and a run's first value is its bin's minimum.
    # starts[b] == starts[b + 1] means that bin b is empty.
    starts = list(map(bisect_left, repeat(ascending), _BIN_FLOORS))
    # A band key is its two rows' values side by side, in 15 hex digits: exact, so no
    # extra hash collisions. Written out for two rows for speed (see the assert above).
    return tuple(
        [
            f"{prefix}{ascending[first] << 30 | ascending[second]:015x}"
            if first < second < end
            else exact + fingerprint
            for prefix, exact, first, second, end in zip(
                _BAND_PREFIXES,
                _EXACT_PREFIXES,
                starts[0:-1:2],
                starts[1::2],
                starts[2::2],
                strict=True,
            )
        ]
    )


def _exact_bands(fingerprint: str) -> tuple[str, ...]:
    # Stand-in for a band that cannot be computed: only requests with the same exact
    # template share it, so short texts never collide by chance. "=" keeps these apart
    # from MinHash keys, which are plain hex.
    return tuple(map(add, _EXACT_PREFIXES, repeat(fingerprint)))


def near_duplicate_bands(prompt: str | None, system: str | None) -> tuple[str, ...]:
    """``BANDS`` LSH band keys of the (system, prompt) pair; near-duplicates share one.

    Requests from one template that differ by a few swapped words share a band key
    with high probability and unrelated prompts almost never do, so a window store
    can count distinct keys and networks per band key to find campaigns that vary
    their wording. Band ``i`` is always at position ``i`` and always present (the
    window store lays them out positionally): where a text is too short to fill a
    band, that band falls back to the exact template fingerprint (``"b3:=<fp>"``), so
    only identical skeletons share it.
    """
    return template_features(prompt, system).bands


@dataclass(frozen=True, slots=True)
class TemplateFeatures:
    """Template signals of one request: exact skeleton id and ``BANDS`` band keys."""

    fingerprint: str
    bands: tuple[str, ...]


def template_features(prompt: str | None, system: str | None) -> TemplateFeatures:
    """Fingerprint and band keys together, computing each skeleton once."""
    system_template = _system_template(system)
    prompt_tokens = _skeleton_tokens(prompt)
    prompt_skel = " ".join(prompt_tokens)
    fingerprint = _fingerprint_of_skeletons(system_template.skeleton, prompt_skel)
    hashes = _bigram_hashes(_pair_tokens(system_template, prompt_skel, prompt_tokens))
    return TemplateFeatures(fingerprint, _bands_of_hashes(hashes, fingerprint))
