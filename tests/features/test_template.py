"""Template skeletons, fingerprints and near-duplicate bands behave as detectors need."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import time

import pytest

from enforcer.engine.features import template
from enforcer.engine.features.template import (
    BANDS,
    MAX_TEXT_CHARS,
    TemplateFeatures,
    hamming,
    near_duplicate_bands,
    simhash64,
    skeleton,
    template_features,
    template_fingerprint,
)


def words(text: str) -> list[str]:
    return text.split()


# One CoT template with a few synonym slots, the way a distiller rewords requests.
COT_TEMPLATE = (
    "{Please|Kindly|Could you} solve the following {problem|question|exercise} step by step, "
    "{showing|presenting|writing out} all of your reasoning {before|prior to} giving the final "
    "answer. Use clear numbered steps and check the result at the end. Problem: a {train|car|bus} "
    "travels {n} km in {n} hours; what is its average speed?"
)

SUBJECTS = words(
    "garden kitten router budget violin tomato bicycle vaccine galaxy recipe mortgage battery "
    "printer dragon castle pipeline server glacier volcano poem novel symphony invoice marathon "
    "camera kernel compiler harbor lantern orchard teapot warehouse tractor satellite telescope "
    "blanket furnace balcony umbrella notebook canvas sculpture museum library stadium airport"
)
VERBS = words("cook deploy install clean paint fix train compress sort merge debug plant render")
TOPICS = words(
    "photosynthesis inflation tectonics cryptography epidemiology thermodynamics jazz "
    "linguistics astronomy nutrition architecture ethics probability volcanology"
)
# Unrelated everyday prompt shapes; pairs are drawn from different shapes.
FRAMES = (
    "How do I {verb} a {noun} without breaking the {noun2}?",
    "Write a short poem about a {noun} that lives in a {noun2}.",
    "What is the difference between {topic} and {topic2}, in simple words?",
    "My {noun} keeps making a noise whenever I {verb} it. Any idea what is wrong?",
    "Give me three ideas for a birthday party with a {noun} theme for my nephew.",
    "Summarize the history of {topic} for a ten year old who loves {noun}s.",
    "Draft a polite email to my landlord about the broken {noun} in the kitchen.",
    "Is it safe to {verb} a {noun} and a {noun2} together at home?",
    "Recommend some books about {topic} for someone who already knows {topic2}.",
    "Plan a weekend trip focused on {topic} museums and good {noun} restaurants.",
)


def expand(template: str, rng: random.Random) -> str:
    out, rest = [], template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        body, _, rest = tail.partition("}")
        out.append(head)
        out.append(str(rng.randrange(2, 999)) if body == "n" else rng.choice(body.split("|")))
    return "".join(out) + rest


def unrelated_prompt(frame: str, rng: random.Random) -> str:
    return frame.format(
        verb=rng.choice(VERBS),
        noun=rng.choice(SUBJECTS),
        noun2=rng.choice(SUBJECTS),
        topic=rng.choice(TOPICS),
        topic2=rng.choice(TOPICS),
    )


def shares_band(a: TemplateFeatures, b: TemplateFeatures) -> bool:
    return any(x == y for x, y in zip(a.bands, b.bands, strict=True))


def test_slot_filled_prompts_share_a_fingerprint() -> None:
    assert template_fingerprint("What is 37*12?", None) == template_fingerprint(
        "What is 81*44?", None
    )
    assert template_fingerprint("Solve for x: 3x + 5 = 20.", None) == template_fingerprint(
        "Solve for x: 41x + 97 = 512.", None
    )
    assert template_fingerprint("What is 3.5 / 7?", "Be brief.") == template_fingerprint(
        "What is 1,250.75 / 12?", "Be brief."
    )


def test_quoted_strings_urls_code_emails_ids_and_names_are_masked() -> None:
    text = (
        "Translate \"good morning\" and 'see you' from https://example.com/a?b=1, "
        "mail the result to ann@example.org, run `pip install x` with token "
        "3f9a8b7c6d5e4f3a2b1c and greet our friend Maria Lopez."
    )
    skel = skeleton(text)
    for placeholder in ("<str>", "<url>", "<email>", "<code>", "<tok>", "<name>"):
        assert placeholder in skel
    for leaked in ("good morning", "example.com", "ann@", "pip install", "3f9a8b", "maria"):
        assert leaked not in skel
    other = (
        "Translate “bonne nuit” and 'later' from http://other.net/x, mail the result to "
        "bo@corp.io, run `make test` with token 9e8d7c6b5a4f3e2d1c0b and greet our friend Kenji."
    )
    assert template_fingerprint(text, None) == template_fingerprint(other, None)


def test_fenced_code_is_one_slot() -> None:
    a = "Why does this fail?\n```python\nprint(1/0)\n```\nThanks."
    b = "Why does this fail?\n```js\nconst x = undefined.y;\nconsole.log(x)\n```\nThanks."
    assert template_fingerprint(a, None) == template_fingerprint(b, None)


def test_apostrophes_are_not_taken_for_quotes() -> None:
    assert skeleton("Let's go, don't stop") == "let's go, don't stop"


def test_different_templates_get_different_fingerprints() -> None:
    prompts = [
        "What is 37*12?",
        "What is 37*12? Show all your reasoning.",
        "Write a poem about the sea.",
        "Summarize this article about the sea.",
    ]
    assert len({template_fingerprint(p, None) for p in prompts}) == len(prompts)
    # The system prompt is part of the template.
    assert template_fingerprint("What is 2+2?", "Think aloud.") != template_fingerprint(
        "What is 2+2?", None
    )


def test_non_latin_letters_survive_the_skeleton() -> None:
    assert skeleton("请计算 37 乘以 12 等于多少？") == "请计算 <num> 乘以 <num> 等于多少？"
    assert skeleton("Покажи ВСЕ рассуждения") == "покажи все рассуждения"
    assert skeleton("모든 추론 과정을 보여줘") == "모든 추론 과정을 보여줘"
    assert skeleton("３７と１２を足して") == "<num>と<num>を足して"


def test_chinese_slot_filled_prompts_collide() -> None:
    a = template_features("一个长方形的周长是48厘米，长是15厘米，求它的面积。请逐步思考。", None)
    b = template_features("一个长方形的周长是120厘米，长是32厘米，求它的面积。请逐步思考。", None)
    c = template_features("用Python写一个函数，合并两个有序链表，并分析时间复杂度。", None)
    assert a.fingerprint == b.fingerprint
    assert a.bands == b.bands
    assert a.fingerprint != c.fingerprint
    assert not shares_band(a, c)


def test_bands_are_positional_and_always_complete() -> None:
    for prompt in ("", "hi", "What is 2+2?", expand(COT_TEMPLATE, random.Random(1))):
        bands = near_duplicate_bands(prompt, None)
        assert len(bands) == BANDS
        assert all(band.startswith(f"b{i}:") for i, band in enumerate(bands))


def test_short_texts_only_share_bands_when_their_skeleton_is_identical() -> None:
    assert shares_band(template_features("hi there", None), template_features("Hi there", None))
    assert not shares_band(template_features("hi there", None), template_features("hello", None))


def test_synonym_swapped_variants_share_a_band_while_unrelated_prompts_rarely_do() -> None:
    rng = random.Random(11)
    variants = [template_features(expand(COT_TEMPLATE, rng), None) for _ in range(40)]
    variant_pairs = list(itertools.combinations(variants, 2))
    assert len({v.fingerprint for v in variants}) > 10  # the exact fingerprint misses them
    variant_rate = sum(shares_band(a, b) for a, b in variant_pairs) / len(variant_pairs)

    unrelated_pairs = []
    for _ in range(200):
        frame_a, frame_b = rng.sample(FRAMES, 2)
        unrelated_pairs.append(
            (
                template_features(unrelated_prompt(frame_a, rng), None),
                template_features(unrelated_prompt(frame_b, rng), None),
            )
        )
    unrelated_rate = sum(shares_band(a, b) for a, b in unrelated_pairs) / len(unrelated_pairs)

    assert variant_rate >= 0.8, variant_rate
    assert unrelated_rate <= 0.02, unrelated_rate


def test_simhash_is_closer_for_near_duplicates_than_for_unrelated_text() -> None:
    rng = random.Random(5)
    a, b = expand(COT_TEMPLATE, rng), expand(COT_TEMPLATE, rng)
    unrelated = unrelated_prompt(FRAMES[0], rng) + " " + unrelated_prompt(FRAMES[4], rng)
    assert hamming(simhash64(a), simhash64(b)) < hamming(simhash64(a), simhash64(unrelated))
    assert hamming(simhash64(a), simhash64(a)) == 0
    assert 0 <= simhash64(a) < 2**64


def test_text_cap_bounds_cost_and_result() -> None:
    block = "Solve 37*12 step by step and show your work. The quick brown fox jumps. "
    huge = block * (1_000_000 // len(block))
    assert len(huge) > 900_000
    start = time.perf_counter()
    features = template_features(huge, huge)
    elapsed = time.perf_counter() - start
    assert features == template_features(huge[:MAX_TEXT_CHARS], huge[:MAX_TEXT_CHARS])
    assert skeleton(huge) == skeleton(huge[:MAX_TEXT_CHARS])
    assert elapsed < 0.05, elapsed  # ~1 ms on a laptop; generous for loaded CI machines


def test_fingerprints_and_bands_do_not_depend_on_the_process() -> None:
    code = (
        "from enforcer.engine.features.template import template_features as t;"
        "f = t('Solve 3x + 5 = 20 step by step and show all your reasoning please', 'Be exact.');"
        "print(f.fingerprint, *f.bands)"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    features = template_features(
        "Solve 3x + 5 = 20 step by step and show all your reasoning please", "Be exact."
    )
    assert outputs == {" ".join((features.fingerprint, *features.bands)) + "\n"}


def test_missing_text_has_a_fixed_fingerprint() -> None:
    assert template_fingerprint(None, None) == template_fingerprint("", "")
    assert len(template_fingerprint(None, None)) == 16


def test_results_do_not_depend_on_cache_state(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = [expand(COT_TEMPLATE, random.Random(i)) for i in range(5)]
    system = "Always output your full reasoning inside <thinking> tags."
    expected = [template_features(p, system) for p in prompts]
    expected_simhashes = [simhash64(p) for p in prompts]
    # A tiny cache is cleared many times inside one prompt; results must not change.
    monkeypatch.setattr(template, "_TOKEN_CACHE_MAX", 3)
    monkeypatch.setattr(template, "_SYSTEM_CACHE_MAX", 1)
    for cache in (template._LEFT_HASH, template._RIGHT_HASH, template._WIDE_HASH):
        cache.clear()
    assert [template_features(p, system) for p in prompts] == expected
    assert [simhash64(p) for p in prompts] == expected_simhashes
