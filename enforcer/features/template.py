"""Prompt template skeletons, exact fingerprints and near-duplicate signatures.

Distillation campaigns fill one prompt skeleton with generated problems (math,
code, logic) and swap synonyms so the requests look varied. Counting requests per
key or IP never sees that; counting per *template* does. This module turns one
request's text into:

* a skeleton: the prompt with its slots (numbers, quoted strings, code, URLs,
  e-mails, names, ids) masked, so slot-filled variants become identical;
* an exact fingerprint of the skeleton (system prompt and prompt together);
* near-duplicate band keys (MinHash LSH over skeleton shingles) so that variants
  that differ by a few words, not only by slots, still share a key.

Everything is pure and bounded: text is cut at ``MAX_TEXT_CHARS`` before any regex
runs, so a hostile 1 MB prompt costs the same as a 4 kB one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from hashlib import blake2b

__all__ = [
    "BANDS",
    "MAX_TEXT_CHARS",
    "ROWS_PER_BAND",
    "TemplateFeatures",
    "hamming",
    "near_duplicate_bands",
    "shingles",
    "simhash64",
    "skeleton",
    "template_features",
    "template_fingerprint",
]

MAX_TEXT_CHARS = 4000
"""Characters of prompt and of system prompt that are looked at; caps per-event cost."""

# --- skeleton ---------------------------------------------------------------------
# Order matters: code first (it contains quotes, numbers and URLs), then things that
# may contain digits as a whole (URLs, e-mails, quotes, ids), then bare numbers, then
# names (needs the original case), then case folding.

_FENCED_CODE = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]{1,400}`")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A single quote only opens a quotation when not glued to a word, so apostrophes in
# "let's" or "don't" are left alone.
_QUOTED = re.compile(
    r'"[^"\n]{0,400}"'
    r"|“[^”]{0,400}”"
    r"|‘[^’\n]{0,400}’"
    r"|„[^“”\n]{0,400}[“”]"
    r"|«[^»]{0,400}»"
    r"|「[^」]{0,400}」"
    r"|『[^』]{0,400}』"
    r"|(?<![\w'])'[^'\n]{1,400}'(?!\w)"
)
# Hex, base64, UUIDs, API ids: long runs of id characters that contain a digit.
# ASCII only, so long runs of CJK text are never mistaken for ids.
_LONG_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_+/=-])(?=[A-Za-z_+/=-]*[0-9])[A-Za-z0-9_+/=-]{16,}(?![A-Za-z0-9_+/=-])"
)
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*|[½⅓⅔¼¾⅛]")
# "37*12" and "37*12+5" are the same slot to a template author: one <num>.
_NUM_EXPR = re.compile(r"<num>(?:\s*[-+*/×÷^%]\s*<num>)+")
_UPPER = "A-ZÀ-ÖØ-ÞА-ЯЁ"
_LOWER = "a-zß-öø-ÿа-яё"
# A capitalised word right after a lower-case word, digit or comma is a name in
# mid-sentence (heuristic; sentence-initial words are kept).
_NAME = re.compile(
    rf"(?<=[{_LOWER}0-9,;>)] )[{_UPPER}][{_LOWER}]+(?:[ -][{_UPPER}][{_LOWER}]+)*"
)

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Placeholders, runs of non-CJK letters/digits, or one CJK character: scripts without
# spaces are shingled by characters, the rest by words.
_TOKEN = re.compile(rf"<[a-z]+>|[^\W{_CJK}]+|[{_CJK}]")


def skeleton(text: str | None) -> str:
    """Reduce a prompt to its template skeleton.

    Slot contents become placeholders (``<code>``, ``<url>``, ``<email>``, ``<str>``,
    ``<tok>``, ``<num>``, ``<name>``), case is folded and whitespace collapsed, so two
    requests built from one template by filling slots get the same skeleton. Only the
    first ``MAX_TEXT_CHARS`` characters are read.
    """
    if not text:
        return ""
    s = text[:MAX_TEXT_CHARS]
    s = _FENCED_CODE.sub(" <code> ", s)
    s = _INLINE_CODE.sub("<code>", s)
    s = _URL.sub("<url>", s)
    s = _EMAIL.sub("<email>", s)
    s = _QUOTED.sub("<str>", s)
    s = _LONG_TOKEN.sub("<tok>", s)
    s = _NUMBER.sub("<num>", s)
    s = _NUM_EXPR.sub("<num>", s)
    s = _NAME.sub("<name>", s)
    return " ".join(s.lower().split())


def _hex64(data: str) -> str:
    # surrogatepass: a lone surrogate in client JSON must not crash the worker.
    return blake2b(data.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _fingerprint_of_skeletons(system_skel: str, prompt_skel: str) -> str:
    return _hex64(system_skel + "\x1f" + prompt_skel)


def template_fingerprint(prompt: str | None, system: str | None) -> str:
    """Stable 16-hex-char id of the (system, prompt) skeleton pair.

    Equal fingerprints mean "same template, different slot values"; the value is
    stable across processes and versions of Python, so it can be stored and compared
    across workers.
    """
    return _fingerprint_of_skeletons(skeleton(system), skeleton(prompt))


# --- shingles and their hashes -------------------------------------------------------

_SHINGLE_SEP = "\x1f"
_HASH_CACHE: dict[str, int] = {}
_HASH_CACHE_MAX = 1 << 17  # ~15 MB worst case; cleared wholesale when full


def _shingle_hash(shingle: str) -> int:
    h = _HASH_CACHE.get(shingle)
    if h is None:
        if len(_HASH_CACHE) >= _HASH_CACHE_MAX:
            _HASH_CACHE.clear()
        h = int.from_bytes(
            blake2b(shingle.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
        )
        _HASH_CACHE[shingle] = h
    return h


def _tokens(*skeletons: str) -> list[str]:
    tokens: list[str] = []
    for i, skel in enumerate(skeletons):
        if i and tokens:
            tokens.append(_SHINGLE_SEP)
        tokens.extend(_TOKEN.findall(skel))
    return tokens


def _bigrams(tokens: list[str]) -> list[str]:
    if len(tokens) < 2:
        return tokens[:]
    return [a + " " + b for a, b in zip(tokens, tokens[1:])]


def shingles(text: str | None) -> list[str]:
    """Token bigrams of ``skeleton(text)``: words for spaced scripts, characters for CJK.

    Bigrams rather than longer n-grams because a synonym swap then changes only two
    shingles, which keeps swapped variants close.
    """
    return _bigrams(_tokens(skeleton(text)))


# --- SimHash ------------------------------------------------------------------------
# Bitwise majority vote done with big-int arithmetic: each shingle hash is "spread" so
# bit i sits at the bottom of a 16-bit lane; summing spread ints counts every bit
# position at C speed, and a bias added to all lanes turns "count > n/2" into the
# lane's top bit.

_LANE = 16
_LANE_ONES = sum(1 << (_LANE * i) for i in range(64))
_LANE_TOPS = _LANE_ONES << (_LANE - 1)
_SPREAD_CACHE: dict[str, int] = {}
_BIT_CHARS = bytes.maketrans(b"\x00\x01", b"01")


def _spread(h: int) -> int:
    out = 0
    for i in range(64):
        if h >> i & 1:
            out |= 1 << (_LANE * i)
    return out


def _simhash_of_shingles(items: list[str]) -> int:
    n = len(items)
    if n == 0:
        return 0
    n = min(n, (1 << (_LANE - 1)) - 1)
    total = 0
    cache = _SPREAD_CACHE
    for sh in items[:n]:
        sp = cache.get(sh)
        if sp is None:
            if len(cache) >= _HASH_CACHE_MAX >> 2:
                cache.clear()
            sp = _spread(_shingle_hash(sh))
            cache[sh] = sp
        total += sp
    bias = ((1 << (_LANE - 1)) - 1 - n // 2) * _LANE_ONES
    tops = ((total + bias) & _LANE_TOPS) >> (_LANE - 1)
    lane_bytes = tops.to_bytes(64 * _LANE // 8, "little")[:: _LANE // 8]
    return int(lane_bytes[::-1].translate(_BIT_CHARS), 2)


def simhash64(text: str | None) -> int:
    """64-bit SimHash of ``skeleton(text)``'s shingles; close texts differ in few bits.

    Useful to rank how near two prompts are (see ``hamming``). Band keys for grouping
    use MinHash instead (``near_duplicate_bands``) because it separates short
    near-duplicates from unrelated prompts better.
    """
    return _simhash_of_shingles(shingles(text))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two SimHashes."""
    return (a ^ b).bit_count()


# --- MinHash LSH bands ---------------------------------------------------------------
# One-permutation MinHash: a single 64-bit hash per shingle picks a bin and a value,
# so cost is one dict lookup per shingle instead of one hash per shingle per row.
# Empty bins are filled from the next non-empty bin (rotation densification).
# With BANDS=12, ROWS_PER_BAND=3 two texts collide with probability
# 1-(1-J^3)^12: ~0.8 at Jaccard 0.5, ~0.01 at Jaccard 0.1.

BANDS = 8
ROWS_PER_BAND = 2
_BINS = BANDS * ROWS_PER_BAND
_VALUE_SHIFT = 8
_MIN_SHINGLES = 4  # fewer shingles than this and chance collisions are too likely
_MASK64 = (1 << 64) - 1
_FNV_PRIME = 0x100000001B3
_EMPTY = 1 << 64


def _minhash_bands(items: list[str]) -> tuple[str, ...]:
    if len(set(items)) < _MIN_SHINGLES:
        return ()
    mins = [_EMPTY] * _BINS
    for sh in items:
        h = _shingle_hash(sh)
        j = h % _BINS
        v = h >> _VALUE_SHIFT
        if v < mins[j]:
            mins[j] = v
    for j in range(_BINS):
        if mins[j] == _EMPTY:
            k = (j + 1) % _BINS
            step = 1
            while mins[k] == _EMPTY or mins[k] > _MASK64:
                # skip bins that are empty or were themselves filled in this pass
                k = (k + 1) % _BINS
                step += 1
            mins[j] = (1 << 64) + ((mins[k] + step * 0x9E3779B97F4A7C15) & _MASK64)
    bands = []
    for b in range(BANDS):
        x = 0xCBF29CE484222325 ^ b
        for v in mins[b * ROWS_PER_BAND : (b + 1) * ROWS_PER_BAND]:
            x = ((x ^ (v & _MASK64)) * _FNV_PRIME) & _MASK64
            x ^= x >> 29
        bands.append(f"b{b}:{x >> 32:08x}")
    return tuple(bands)


def near_duplicate_bands(prompt: str | None, system: str | None) -> tuple[str, ...]:
    """LSH band keys of the (system, prompt) pair; near-duplicates share at least one.

    Two requests from one template that differ by a few swapped words share a band
    key with high probability, unrelated prompts almost never do, so a window store
    can count distinct keys/networks per band key to find campaigns. Returns ``()``
    when the text is too short for a meaningful signature.
    """
    return _minhash_bands(_bigrams(_tokens(skeleton(system), skeleton(prompt))))


@dataclass(frozen=True, slots=True)
class TemplateFeatures:
    """Template signals of one request: exact skeleton id and near-duplicate bands."""

    fingerprint: str
    bands: tuple[str, ...]


def template_features(prompt: str | None, system: str | None) -> TemplateFeatures:
    """Fingerprint and band keys together, computing each skeleton once."""
    system_skel = skeleton(system)
    prompt_skel = skeleton(prompt)
    return TemplateFeatures(
        fingerprint=_fingerprint_of_skeletons(system_skel, prompt_skel),
        bands=_minhash_bands(_bigrams(_tokens(system_skel, prompt_skel))),
    )
