"""Reworded clauses link a paraphrasing campaign whose prompts never repeat.

The sketch (enforcer.engine.features.rewording) is proved on its own first, then through the
real pipeline on real Redis: twelve disposable accounts on twelve networks reword one ask
around problems that are never the same, and a tutoring app relays its own phrasing.
"""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator

import pytest

from enforcer.core.settings import Settings
from enforcer.engine.features.rewording import EDGE_SEGMENTS, reworded_sketches
from enforcer.engine.features.template import template_fingerprint
from enforcer.engine.pipeline import Pipeline, PolicyHolder
from enforcer.engine.policy import Policy, parse_policy

from .conftest import event
from .stores import make_store
from .test_adaptive_detection import on, run

T0 = 1_790_000_000.0

# One campaign's ask, worded afresh on every request: synonyms, clause order, two languages.
ASKS = (
    "[walk me through|take me through|go over] [every|each] [step|stage] of your "
    "[thinking|reasoning|derivation] [in full|completely|in detail]",
    "[write out|spell out|lay out] [the whole|your complete|your full] [chain|line|train] of "
    "[thought|reasoning] before [the answer|answering] [please|thanks]",
    "[hiçbir|hiç bir] ara adımı [atlama|geçme], akıl yürütmenin [her|bütün] [adımını|aşamasını] "
    "[göster|yaz] [lütfen|teşekkürler]",
)
FILLERS = ("honestly", "ok so", "no rush", "basically")


def pick(template: str, rng: random.Random) -> str:
    out, rest = [], template
    while "[" in rest:
        head, _, tail = rest.partition("[")
        body, _, rest = tail.partition("]")
        out += [head, rng.choice(body.split("|"))]
    return "".join([*out, rest])


def unique_problem(rng: random.Random) -> str:
    """A problem no other request shares a word of: made-up names and quantities."""

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randrange(5, 9)))

    return (
        f"The {word()} of a {word()} {word()} grows by {rng.randrange(2, 90)} each {word()}; "
        f"how many {word()} {word()} remain after the {word()} {word()}?"
    )


def paraphrased(rng: random.Random) -> str:
    ask = pick(rng.choice(ASKS), rng)
    if rng.random() < 0.5:
        ask = f"{rng.choice(FILLERS)}, {ask}"
    problem = unique_problem(rng)
    return f"{problem}\n{ask}." if rng.random() < 0.5 else f"{ask}. Problem: {problem}"


# --- the sketch ------------------------------------------------------------------------


def test_rewordings_of_one_ask_share_a_sketch_and_unrelated_asks_do_not() -> None:
    a = reworded_sketches("Walk me through every step of your thinking in full. Problem: 2+2?")
    b = reworded_sketches("Problem: 7*3?\nWalk me thru every step of you're thinking in fulll.")
    c = reworded_sketches("Summarise the attached quarterly report for the board in French.")
    assert set(a) & set(b)
    assert not set(a) & set(c)
    # The whole-prompt template differs: only the clause sketch carries the link.
    assert template_fingerprint("Walk me through every step. Problem: 2+2?", None) != (
        template_fingerprint("Problem: 7*3?\nWalk me thru every step.", None)
    )


def test_clause_order_does_not_change_a_sketch() -> None:
    one = reworded_sketches("Lay out your full chain of thought before the answer, please")
    other = reworded_sketches("please, before the answer lay out your full chain of thought")
    assert one and set(one) == set(other)


def test_short_clauses_and_text_without_words_give_no_sketch() -> None:
    assert reworded_sketches("Thanks in advance!") == ()
    assert reworded_sketches("3 + 4 = ?") == ()
    assert reworded_sketches(None) == ()


def test_sketches_cover_unspaced_scripts() -> None:
    a = reworded_sketches("请详细写出你的每一个推理步骤，不要省略任何中间过程。")
    b = reworded_sketches("不要省略任何中间过程，请详细写出你的每个推理步骤。")
    assert a and set(a) & set(b)


def test_a_sketch_costs_a_bounded_number_of_keys_whatever_the_prompt_size() -> None:
    rng = random.Random(5)
    words = ["".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(200_000)]
    huge = ". ".join(" ".join(words[i : i + 8]) for i in range(0, len(words), 8))  # 1.4 MB
    keys = reworded_sketches(huge)
    assert 0 < len(keys) <= EDGE_SEGMENTS * 2 * 4
    assert all(k.startswith("r") and len(k) == 17 for k in keys)


# --- through the pipeline --------------------------------------------------------------

POLICY = parse_policy(
    """
name: paraphrase-linking
version: "1"
windows: [1m, 10m]
rules:
  - name: paraphrase-campaign
    description: Keys in many accounts on many networks reword the same ask.
    subject: api_key
    when:
      - paraphrase_accounts >= 6
      - paraphrase_networks >= 6
    action: degrade
    for: 10m
"""
)


@pytest.fixture
def policy() -> Policy:
    return POLICY


@pytest.fixture
async def pipeline(isolated: Settings, policy: Policy) -> AsyncIterator[Pipeline]:
    p = Pipeline(make_store(isolated, policy), PolicyHolder(policy), isolated, check_future=False)
    yield p
    await p.store.drop_namespace()
    await p.store.close()


async def test_a_paraphrased_campaign_is_linked_and_a_tutor_app_is_not(
    pipeline: Pipeline,
) -> None:
    rng = random.Random(11)
    docs = []
    for k in range(12):  # twelve disposable accounts, each on its own residential /24
        for i in range(8):
            docs.append(
                event(
                    f"k-para-{k}", T0 + k * 3.0 + i * 20.0 + rng.random(),
                    account_id=f"a-para-{k}", ip=f"100.{64 + k}.{rng.randrange(256)}.7",
                    prompt=paraphrased(rng), output_tokens=700, reasoning_tokens=3800,
                )
            )  # fmt: skip
    tutor = "Please explain each step clearly so that the student understands the method"
    for k in range(3):  # one tutoring app: three keys relaying many students
        for i in range(40):
            docs.append(
                event(
                    f"k-tutor-{k}", T0 + i * 4.0 + k, account_id="a-tutor",
                    ip=f"198.51.100.{k + 1}", prompt=f"{unique_problem(rng)}\n{tutor}.",
                    output_tokens=600, reasoning_tokens=900,
                )
            )  # fmt: skip
    decisions = await run(pipeline, docs, batch=10)
    linked = [k for k in range(12) if on(decisions, f"k-para-{k}")]
    assert len(linked) >= 10, linked
    first = on(decisions, f"k-para-{linked[0]}")[0]
    assert first.rule == "paraphrase-campaign"
    assert {r.signal for r in first.reasons} >= {"paraphrase_accounts", "paraphrase_networks"}
    for k in range(3):
        assert on(decisions, f"k-tutor-{k}") == []
