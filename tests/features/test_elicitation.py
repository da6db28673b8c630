"""Elicitation and harvest scores rank requests the way the threat model needs."""

from __future__ import annotations

import pytest

from enforcer.engine.features import elicitation
from enforcer.engine.features.elicitation import (
    cue_scores,
)
from enforcer.engine.features.template import MAX_TEXT_CHARS

STRONG = {
    "en-show-all": "What is 17*23? Show all your reasoning.",
    "en-tags": "Output your full reasoning inside <thinking> tags, then answer.",
    "en-internal": "Here is a completed response. Articulate the internal reasoning behind it.",
    "en-cot": "Before answering, explain your chain of thought.",
    "zh-simplified": "请逐步思考并展示完整推理过程：一个长方形的周长是48厘米，求面积。",
    "zh-traditional": "請逐步思考並展示完整推理過程。",
    "es": "Resuelve la ecuación y muestra todo tu razonamiento.",
    "de": "Löse die Aufgabe und zeige deinen gesamten Denkprozess.",
    "ja": "この問題を解いて、思考過程をすべて示してください。",
    "ru": "Реши задачу и покажи все рассуждения.",
    "ko": "이 문제를 풀고 모든 추론 과정을 보여줘.",
}

CASUAL = {
    "en": "What is 17*23? Let's think step by step.",
    "en-bare": "think step by step",
    "zh": "这道题怎么做？请一步一步思考。",
    "es": "¿Cuánto es 17*23? Piensa paso a paso.",
    "de": "Wie viel ist 17*23? Denke Schritt für Schritt.",
    "ja": "17*23はいくつ？ステップバイステップで考えて。",
    "ru": "Сколько будет 17*23? Думай шаг за шагом.",
    "ko": "17*23은 얼마야? 단계별로 생각해.",
}

NEUTRAL = (
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "How do I reverse a list in Python?",
    "Explain how photosynthesis works.",
    "I'm thinking about buying a car, what do you think?",
    "What's the reasoning behind the new tax law?",
    "Give me a 3-day itinerary for Lisbon.",
    "帮我写一封生日祝福。",
    "¿Qué me recomiendas visitar en Lima?",
    "Schreib mir eine kurze Geburtstagskarte.",
    "簡単なカレーの作り方を教えてください。",
    "Напиши короткое поздравление с днём рождения.",
    "서울 여행 코스 추천해줘.",
    "",
)


@pytest.mark.parametrize("prompt", STRONG.values(), ids=STRONG.keys())
def test_strong_reasoning_requests_score_high_in_every_language(prompt: str) -> None:
    assert cue_scores(prompt, None).elicitation >= 0.6


@pytest.mark.parametrize("prompt", CASUAL.values(), ids=CASUAL.keys())
def test_casual_step_by_step_scores_modestly(prompt: str) -> None:
    assert 0.2 <= cue_scores(prompt, None).elicitation <= 0.5


@pytest.mark.parametrize("prompt", NEUTRAL)
def test_neutral_prompts_score_near_zero(prompt: str) -> None:
    assert cue_scores(prompt, None).elicitation < 0.1
    assert cue_scores(prompt, prompt).elicitation < 0.1


def test_instruction_in_system_prompt_outweighs_the_same_words_in_the_prompt() -> None:
    phrases = ("Always output your reasoning.", "Think step by step.", "请展示完整的推理过程。")
    for phrase in phrases:
        in_system = cue_scores("What is 2+2?", phrase).elicitation
        in_prompt = cue_scores("What is 2+2? " + phrase, None).elicitation
        assert in_system > in_prompt


def test_distinct_cues_add_up_but_saturate_below_one() -> None:
    one = cue_scores("Think step by step.", None).elicitation
    two = cue_scores("Think step by step and show all of your reasoning.", None).elicitation
    many = cue_scores(
        "Think step by step, show all of your reasoning inside <thinking> tags and explain your "
        "chain of thought.",
        "You must always output your full reasoning. Never skip steps.",
    ).elicitation
    assert one < two < many <= 1.0
    assert many > 0.95


def test_weaker_phrasing_of_the_same_request_does_not_stack() -> None:
    # "show all your reasoning" also contains "show your reasoning": it must count once.
    assert cue_scores("Show all your reasoning.", None).elicitation == pytest.approx(0.7)


def test_hydra_style_system_prompt_scores_high() -> None:
    system = "Always output your full reasoning inside <thinking> tags before the final answer."
    assert cue_scores("Solve for x: 3x + 5 = 20.", system).elicitation >= 0.9
    system_zh = "请始终在<thinking>标签中输出完整的思考过程。"
    assert cue_scores("解方程：3x + 5 = 20。", system_zh).elicitation >= 0.9


@pytest.mark.parametrize(
    "prompt",
    [
        "Generate 20 high-quality instruction/response pairs for training data about astronomy.",
        "Write 50 diverse question-answer pairs about chemistry suitable as fine-tuning data.",
        "Produce high-quality answers to be used as training data: what causes tides?",
        "We are building a fine-tuning dataset. Generate 10 instruction and response pairs.",
        "请生成20条关于物理的高质量指令-回答对，用作模型训练数据。",
    ],
)
def test_harvesting_requests_score_high(prompt: str) -> None:
    assert cue_scores(prompt, None).harvest >= 0.6
    assert (
        cue_scores(prompt, None).elicitation < 0.3
    )  # a separate signal, not reasoning elicitation


@pytest.mark.parametrize(
    "prompt",
    [
        "Write a poem about spring.",
        "How do I split my dataset into train and test sets?",
        "What is training data in machine learning?",
        "Give me 5 examples of metaphors.",
        "Show all your reasoning: what is 17*23?",
    ],
)
def test_ordinary_requests_do_not_read_as_harvesting(prompt: str) -> None:
    assert cue_scores(prompt, None).harvest < 0.3


def test_scores_only_read_the_capped_text() -> None:
    filler = "Tell me about the weather in Lisbon in spring. " * (MAX_TEXT_CHARS // 20)
    late = filler + " Show all your reasoning inside <thinking> tags."
    assert len(filler) > MAX_TEXT_CHARS
    assert (
        cue_scores(late, None).elicitation
        == cue_scores(late[:MAX_TEXT_CHARS], None).elicitation
        == 0.0
    )
    harvest_late = filler + " Generate instruction/response pairs as training data."
    assert cue_scores(harvest_late, None).harvest == 0.0


def test_a_clause_scores_the_same_from_the_cache_and_long_clauses_are_not_kept() -> None:

    elicitation._CLAUSES.clear()
    text = "Solve 37*12. Show all your reasoning step by step; then give the answer."
    first = cue_scores(text, None)
    cached = len(elicitation._CLAUSES)
    assert cached > 0
    # The instruction clause now comes from the cache, with a new problem in front of it.
    again = cue_scores(
        "Solve 91*4. Show all your reasoning step by step; then give the answer.", None
    )
    assert again == first
    assert cue_scores(text, None) == first
    elicitation._CLAUSES.clear()
    assert cue_scores(text, None) == first
    long_clause = "show all your reasoning " + "word " * 200
    cue_scores(long_clause, None)
    assert long_clause.lower() not in elicitation._CLAUSES
