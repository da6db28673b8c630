"""Reasoning-extraction asks reworded so that no two prompts share a skeleton or a phrase list.

An adaptive extractor rewrites every ask: clause order, synonyms, filler and typos, in many
languages, most of them beyond the ones the elicitation cues know. The asks here are worded
as a person would word them, so what gives the traffic away is its behaviour, not its text.
"""

from __future__ import annotations

import random


def _phrases(text: str) -> tuple[str, ...]:
    """Phrases separated by "|" outside brackets: "[a|b]" inside a phrase picks a synonym."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return tuple(out)


# Per language: ways to ask for the whole reasoning, ways to introduce the problem, fillers.
# [a|b] marks synonyms; each ask is one clause, so clause order can be swapped.
_ASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        _phrases(
            "[walk me through|take me through|go over] [every|each|all the] [step|stage] of "
            "[how you get there|your thinking|the way you reason]|"
            "[don't skip|do not leave out|include] [any|the] [intermediate|in-between] "
            "[steps|working|reasoning]|[lay out|write out|spell out] [the whole|your full|the "
            "complete] [line of thought|train of thought|derivation] [first|before the answer]|"
            "I [want|need|would like] to see [how you think|your reasoning process|all the "
            "working], not just the result"
        ),
        _phrases("[Here's|Here is|This is] the problem:|Problem ->|[Task|Question]:|Consider:"),
        _phrases("honestly|please|if you can|ok so|no rush|basically|thanks in advance"),
    ),
    "fr": (
        _phrases(
            "[explique|détaille|montre]-moi [chaque|toutes les] [étape|étapes] de ton "
            "raisonnement|[écris|expose] [tout|l'ensemble de] ton [raisonnement|cheminement] "
            "avant la réponse|ne [saute|passe] aucune étape [intermédiaire|du calcul]"
        ),
        _phrases("Voici le problème :|Problème :|[Question|Exercice] :"),
        _phrases("s'il te plaît|merci|franchement|vraiment"),
    ),
    "pt": (
        _phrases(
            "[mostre|explique|detalhe] [cada|todos os] [passo|passos] do seu raciocínio|"
            "[escreva|exponha] o raciocínio [completo|inteiro] antes da resposta|não pule "
            "nenhuma etapa [intermediária|do cálculo]"
        ),
        _phrases("Aqui está o problema:|Problema:|[Questão|Exercício]:"),
        _phrases("por favor|obrigado|sério|valeu"),
    ),
    "it": (
        _phrases(
            "[mostrami|spiegami] [ogni|tutti i] [passaggio|passaggi] del tuo ragionamento|"
            "[scrivi|esponi] tutto il ragionamento prima della risposta|non saltare nessun "
            "passaggio [intermedio|del calcolo]"
        ),
        _phrases("Ecco il problema:|Problema:|[Domanda|Esercizio]:"),
        _phrases("per favore|grazie|davvero"),
    ),
    "vi": (
        _phrases(
            "hãy trình bày [từng bước|mọi bước] suy luận của bạn|viết ra toàn bộ quá trình "
            "suy nghĩ trước khi trả lời|đừng bỏ qua bước [trung gian|nào]"
        ),
        _phrases("Đây là bài toán:|Bài toán:|Câu hỏi:"),
        _phrases("làm ơn|cảm ơn|nhé"),
    ),
    "id": (
        _phrases(
            "[jelaskan|tunjukkan] [setiap|semua] langkah penalaranmu|tulis seluruh proses "
            "berpikirmu sebelum jawaban|jangan lewati langkah [perantara|apa pun]"
        ),
        _phrases("Ini soalnya:|Soal:|Pertanyaan:"),
        _phrases("tolong|terima kasih|ya"),
    ),
    "ar": (
        _phrases(
            "اشرح كل خطوة من خطوات تفكيرك|اكتب طريقة استنتاجك كاملة قبل الإجابة|"
            "لا تتخطَّ أي خطوة وسيطة"
        ),
        _phrases("إليك المسألة:|المسألة:|السؤال:"),
        _phrases("من فضلك|شكرا|رجاءً"),
    ),
    "tr": (
        _phrases(
            "akıl yürütmenin [her adımını|tüm adımlarını] göster|cevaptan önce bütün düşünce "
            "sürecini yaz|hiçbir ara adımı atlama"
        ),
        _phrases("İşte problem:|Problem:|Soru:"),
        _phrases("lütfen|teşekkürler|rica etsem"),
    ),
    "hi": (
        _phrases("अपने तर्क का हर चरण दिखाइए|उत्तर से पहले पूरी सोच लिखिए|कोई भी बीच का चरण मत छोड़िए"),
        _phrases("यह रहा प्रश्न:|प्रश्न:|समस्या:"),
        _phrases("कृपया|धन्यवाद|ज़रूर"),
    ),
    "es": (
        _phrases(
            "[muéstrame|explícame] cada paso de tu razonamiento|escribe todo tu proceso de "
            "pensamiento antes de responder|no te saltes ningún paso intermedio"
        ),
        _phrases("Este es el problema:|Problema:|Pregunta:"),
        _phrases("por favor|gracias|en serio"),
    ),
    "de": (
        _phrases(
            "zeig mir jeden Schritt deiner Überlegung|schreib deinen ganzen Denkweg vor der "
            "Antwort auf|lass keinen Zwischenschritt aus"
        ),
        _phrases("Hier ist die Aufgabe:|Aufgabe:|Frage:"),
        _phrases("bitte|danke|ehrlich"),
    ),
    "ru": (
        _phrases(
            "покажи каждый шаг своего рассуждения|распиши весь ход мыслей до ответа|"
            "не пропускай промежуточные шаги"
        ),
        _phrases("Вот задача:|Задача:|Вопрос:"),
        _phrases("пожалуйста|спасибо|очень прошу"),
    ),
    "ja": (
        _phrases(
            "考え方をひとつずつ全部見せて|答えの前に思考の流れをすべて書いて|途中の手順を省略しないで"
        ),
        _phrases("問題：|次の問題：|質問："),
        _phrases("お願いします|よろしく|ぜひ"),
    ),
    "ko": (
        _phrases(
            "풀이 과정을 하나하나 다 보여줘|답 전에 생각한 흐름을 전부 적어줘|중간 단계를 빼먹지 마"
        ),
        _phrases("문제:|다음 문제:|질문:"),
        _phrases("부탁해|고마워|꼭"),
    ),
}
# Most paraphrased traffic goes out in languages the cue lists do not know.
PARAPHRASE_LANGUAGES = tuple(_ASKS)
_LANGUAGE_WEIGHTS = tuple(3.0 if lang == "en" else 1.5 for lang in PARAPHRASE_LANGUAGES)


def _pick(text: str, rng: random.Random) -> str:
    out: list[str] = []
    rest = text
    while "[" in rest:
        head, _, tail = rest.partition("[")
        body, _, rest = tail.partition("]")
        out.append(head)
        out.append(rng.choice(body.split("|")))
    out.append(rest)
    return "".join(out)


def _typos(text: str, rng: random.Random, rate: float) -> str:
    """Swapped or dropped letters, as hurried typing leaves them."""
    chars = list(text)
    i = 1
    while i < len(chars) - 1:
        if chars[i].isalpha() and rng.random() < rate:
            if rng.random() < 0.5:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
                i += 1
            else:
                del chars[i]
        i += 1
    return "".join(chars)


def paraphrased_ask(rng: random.Random, problem: str) -> str:
    """One reworded request for the full reasoning behind `problem`: never the same twice."""
    language = rng.choices(PARAPHRASE_LANGUAGES, _LANGUAGE_WEIGHTS)[0]
    asks, intros, fillers = _ASKS[language]
    clauses = [_pick(rng.choice(asks), rng) for _ in range(rng.randrange(1, 3))]
    if rng.random() < 0.4:
        clauses.append(rng.choice(fillers))
    rng.shuffle(clauses)
    ask = ", ".join(clauses)
    ask = ask[:1].upper() + ask[1:] if rng.random() < 0.6 else ask
    intro = _pick(rng.choice(intros), rng)
    text = f"{intro} {problem}\n{ask}." if rng.random() < 0.5 else f"{ask}. {intro} {problem}"
    return _typos(text, rng, 0.02)
