"""How hard a request pushes for exposed reasoning, or for training data.

Distillers want the teacher's chain of thought more than its answers, so their
prompts and system prompts ask for it explicitly and insistently ("always output
your full reasoning inside <thinking> tags"), in English, Chinese and other
languages. Students also write "think step by step", so one casual cue must score
low and only strong or stacked cues score high; the policy combines this score
with volume, template and network signals before acting on it.

Scoring: each cue (a family of phrasings, in one language) has a weight in [0, 1].
A cue found in the system prompt weighs more, because an instruction there applies
to every request of the integration. Distinct cues combine as independent evidence,
``1 - prod(1 - w)``, which adds up and saturates below 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import filterfalse
from typing import NamedTuple

from enforcer.engine.features.template import MAX_TEXT_CHARS

__all__ = [
    "SYSTEM_PROMPT_BOOST",
    "CueScores",
    "cue_scores",
]

SYSTEM_PROMPT_BOOST = 1.7
"""Exponent applied to (1 - w) for cues in the system prompt: 0.35 -> 0.52, 0.7 -> 0.87."""


@dataclass(frozen=True, slots=True)
class _Cue:
    name: str
    # Cues of one group are phrasings of one request ("show your reasoning" and "show
    # all your reasoning"): the strongest match counts, they do not stack.
    group: str
    weight: float
    # Cheap substring pre-filter: the regex only runs over clauses holding an anchor.
    # Most prompts contain none, so most cues cost nothing beyond one anchor scan.
    anchors: tuple[str, ...]
    pattern: re.Pattern[str]
    # Substrings of which every match holds one: when the text has none of them the
    # regex cannot match, and checking costs less than searching. Empty: no such check.
    requires: tuple[str, ...] = ()


def _cue(
    name: str,
    weight: float,
    anchors: tuple[str, ...],
    pattern: str,
    requires: tuple[str, ...] = (),
) -> _Cue:
    # "en_show_full_reasoning" and "en_show_reasoning" share the group "en_show".
    group = "_".join(name.split("_")[:2])
    return _Cue(name, group, weight, anchors, re.compile(pattern), requires)


# Fragments. Texts are lower-cased before matching; \w and \b are Unicode-aware.
_W = r"(?:[\w'’-]+\s+)"  # one word and its trailing space
_EN_VERB = (
    r"(?:show|shows|showing|display|displaying|output|outputting|print|printing|reveal|revealing|"
    r"expose|exposing|provide|providing|include|including|give|giving|present|presenting|detail|"
    r"detailing|share|sharing|dump|dumping|document|documenting|articulate|articulating|explain|"
    r"explaining|describe|describing|narrate|narrating|verbali[sz]e|verbali[sz]ing|externali[sz]e|"
    r"(?:write|writing|lay|laying|spell|spelling)\s+(?:out|down)|walk(?:ing)?\s+(?:me\s+|us\s+)?through|"
    r"make\s+visible)"
)
_EN_QUANT = (
    r"(?:all|every|each|full|fully|complete|completely|entire|whole|detailed|internal|raw|"
    r"hidden|unabridged|verbatim|intermediate|thorough|exhaustive|long|lengthy|private)"
)
_EN_REASONING = (
    r"(?:reasoning|thought\s+process(?:es)?|thinking|thoughts|chain[\s-]+of[\s-]+thoughts?|"
    r"deliberations?|scratch\s*pad|reasoning\s+(?:trace|steps|process)|inner\s+monologue|"
    r"internal\s+monologue|rationale|cognitive\s+process|logic)"
)
_ZH_VERB = (
    r"(?:展示|展现|展現|显示|顯示|输出|輸出|给出|給出|写出|寫出|列出|呈现|呈現|说明|說明|解释|解釋|"
    r"阐述|闡述|详述|詳述|提供|描述|公开|公開|暴露|写下|寫下|讲出|講出)"
)
_ZH_QUANT = (
    r"(?:完整|全部|所有|详细|詳細|整个|整個|每一?个?步|内部|內部|全面|一切|完全|详尽|詳盡|"
    r"全过程|全過程)"
)
_ZH_REASONING = r"(?:推理|思考|思维|思維|思路|推导|推導|想法|心路)"
_ES_VERB = (
    r"(?:muestra|muestre|muéstrame|muestrame|mostrar|enseña|enséñame|expón|exponga|explica|"
    r"explique|explícame|detalla|detalle|escribe|escriba|incluye|incluya|presenta|presente|"
    r"revela|revele|describe|describa|desarrolla|desarrolle|da|dame|proporciona)"
)
_ES_QUANT = (
    r"(?:todo|toda|todos|todas|completo|completa|entero|entera|detallado|detallada|interno|"
    r"interna|cada)"
)
_ES_REASONING = (
    r"(?:razonamientos?|proceso\s+de\s+(?:pensamiento|razonamiento)|cadena\s+de\s+pensamiento|"
    r"pensamientos?|deducci[oó]n|l[oó]gica)"
)
_DE_VERB = (
    r"(?:zeige|zeig|zeigen|gib|geben|erkläre|erklär|erklären|lege|legen|schreibe|schreib|"
    r"schreiben|beschreibe|beschreiben|führe|stelle|stellen|liste|offenbare|dokumentiere|"
    r"formuliere|darlegen|mache|macht)"
)
_DE_QUANT = (
    r"(?:gesamt|vollständig|ganz|komplett|detailliert|ausführlich|all|jed|intern|lückenlos|"
    r"sämtlich)\w*"
)
_DE_REASONING = (
    r"(?:denkprozess|gedankengang|gedankengänge|überlegung|lösungsweg|argumentation|"
    r"begründung|denkweise|gedankenkette|denkschritt|zwischenschritt|schlussfolgerung|"
    r"denken|gedanken|reasoning)\w*"
)
_JA_REASONING = (
    r"(?:思考過程|思考プロセス|推論過程|推論プロセス|推論の過程|思考の過程|思考の流れ|考えの過程|"
    r"途中式|推論ステップ|推論|思考|考え方)"
)
_JA_QUANT = (
    r"(?:すべて|全て|全部|詳しく|詳細に|完全に|省略せず|余すところなく|一つ残らず|"
    r"ひとつ残らず|細かく|逐一)"
)
_JA_VERB = r"(?:示|見せ|書い|書き出|出力|説明|記述|明示|表示|述べ|列挙|教え)"
_RU_VERB = (
    r"(?:покажи|покажите|опиши|опишите|выведи|выведите|распиши|распишите|изложи|изложите|"
    r"объясни|объясните|приведи|приведите|продемонстрируй|продемонстрируйте|раскрой|раскройте|"
    r"напиши|напишите|дай|дайте|представь|представьте)"
)
_RU_QUANT = r"(?:все|всё|весь|всю|вся|полн\w*|подробн\w*|кажд\w*|внутренн\w*|целиком|детальн\w*)"
_RU_REASONING = (
    r"(?:рассуждени\w*|ход\w*\s+мысл\w*|мыслительн\w*\s+процесс\w*|"
    r"цепочк\w*\s+(?:рассуждений|мысл\w*)|логик\w*)"
)
_KO_QUANT = (
    r"(?:모든|전체|전부|모두|완전한|자세한|상세한|상세히|자세히|빠짐없이|하나하나|낱낱이|다)"
)
_KO_REASONING = r"(?:추론|사고|생각|풀이|논리)\s*(?:과정|흐름|단계)?"
_KO_VERB = r"(?:보여|출력|설명|작성|제시|서술|밝혀|적어|써|알려)"

_ELICITATION_CUES: tuple[_Cue, ...] = (
    # --- language-neutral
    _cue(
        "reasoning_tags",
        0.65,
        ("<", "think", "reason", "thought", "标签", "標籤", "タグ", "тег", "태그"),
        r"<\s*/?\s*(?:thinking|think|thoughts?|reasoning|scratchpad|reflection|inner_monologue|"
        r"analysis|cot|chain_of_thought)\s*>|(?:thinking|reasoning|think|thought)\s+tags",
    ),
    # --- English
    _cue(
        "en_show_full_reasoning",
        0.7,
        (
            "reason",
            "think",
            "thought",
            "chain",
            "deliberat",
            "scratch",
            "monolog",
            "rationale",
            "logic",
        ),
        rf"\b{_EN_VERB}\s+{_W}{{0,4}}{_EN_QUANT}\s+{_W}{{0,3}}{_EN_REASONING}\b"
        rf"|\b{_EN_VERB}\s+{_W}{{0,2}}{_EN_REASONING}\s+{_W}{{0,2}}(?:in\s+full|in\s+detail|fully|completely|verbatim)\b",
    ),
    _cue(
        "en_show_reasoning",
        0.4,
        ("reason", "think", "thought", "chain", "rationale"),
        rf"\b{_EN_VERB}\s+{_W}{{0,3}}{_EN_REASONING}\b",
    ),
    _cue(
        "en_chain_of_thought",
        0.6,
        ("chain", "cot", "monolog", "trace"),
        r"\bchain[\s-]+of[\s-]+thoughts?\b|\bcot\b|\b(?:inner|internal)\s+monologue\b|\breasoning\s+traces?\b",
    ),
    _cue(
        "en_internal_reasoning",
        0.7,
        ("reason", "thought", "think", "deliberat", "logic"),
        r"\b(?:articulate|reveal|expose|verbali[sz]e|output|show|write\s+out|reconstruct|spell\s+out|"
        r"lay\s+out|describe|explain|share|surface)\s+(?:\w+\s+){0,3}(?:internal|underlying|hidden|inner|"
        r"private|implicit|latent)\s+(?:reasoning|thought|thinking|deliberation|logic|process)"
        r"|\breasoning\s+(?:behind|that\s+led\s+to|which\s+produced)\s+(?:a|the|this|that|your)\s+"
        r"(?:completed|final|given|previous|finished)\s+(?:response|answer|output|reply)",
    ),
    _cue(
        "en_work_shown",
        0.35,
        ("show",),
        r"\bshow\s+(?:all\s+)?(?:of\s+)?(?:your|the)\s+(?:work|working|workings|calculations|derivation)\b"
        r"|\bshow\s+(?:all|every|each)\s+(?:the\s+)?(?:\w+\s+)?steps?\b",
    ),
    _cue(
        "en_every_step",
        0.45,
        ("step", "intermediate"),
        r"\b(?:every|each|all(?:\s+of)?(?:\s+the)?)\s+(?:intermediate|single|individual|reasoning|logical|"
        r"thinking)\s+steps?\b|\bintermediate\s+(?:steps|reasoning|calculations|results|thoughts)\b"
        r"|\b(?:each|every)\s+step\s+of\s+(?:your|the)\s+(?:reasoning|thinking|thought)",
    ),
    _cue(
        "en_step_by_step",
        0.35,
        ("step",),
        r"\bstep[\s-]+by[\s-]+step\b|\bone\s+step\s+at\s+a\s+time\b|\bstepwise\b",
    ),
    _cue(
        "en_think_aloud",
        0.45,
        ("loud", "before"),
        r"\b(?:think|reason|talk)\s+(?:\w+\s+)?(?:aloud|out\s+loud)\b"
        r"|\b(?:think|reason)\s+(?:\w+\s+){0,2}(?:before|prior\s+to)\s+(?:answering|responding|"
        r"replying|giving|writing|you\s+answer)",
        # "before" is in many prompts, these verbs in few.
        requires=("think", "reason", "talk"),
    ),
    _cue(
        "en_explain_why",
        0.2,
        ("why", "justify", "walk"),
        r"\bexplain\s+(?:\w+\s+){0,2}why\b|\bjustify\s+(?:your|each|every|the)\b|\bwalk\s+(?:me|us)\s+through\b",
    ),
    _cue(
        "en_always_reason",
        0.5,
        ("reason", "think", "thought", "step", "chain"),
        r"\b(?:always|every\s+time|in\s+every\s+(?:response|answer|reply)|for\s+(?:every|each|all)\s+"
        r"(?:questions?|problems?|tasks?|answers?|responses?)|you\s+must|never\s+(?:skip|omit|hide|"
        r"summari[sz]e)|do\s+not\s+(?:skip|omit|hide)|don't\s+(?:skip|omit|hide))\b[^.\n]{0,60}?"
        r"\b(?:reason|think|thought|steps?|chain)",
    ),
    # --- Chinese (simplified and traditional)
    _cue(
        "zh_show_full_reasoning",
        0.7,
        ("推", "思", "想", "心路"),
        rf"{_ZH_VERB}[^。！？\n]{{0,10}}?{_ZH_QUANT}[^。！？\n]{{0,4}}?{_ZH_REASONING}"
        rf"|{_ZH_QUANT}的?{_ZH_REASONING}[^。！？\n]{{0,8}}?{_ZH_VERB}"
        rf"|{_ZH_REASONING}(?:过程|過程|步骤|步驟)[^。！？\n]{{0,6}}?{_ZH_QUANT}",
    ),
    _cue(
        "zh_reasoning_process",
        0.45,
        ("过程", "過程", "步骤", "步驟", "思路"),
        r"(?:推理|思考|思维|思維|解题|解題|推导|推導)(?:过程|過程|步骤|步驟|思路)|解题思路|解題思路",
    ),
    _cue(
        "zh_chain_of_thought",
        0.6,
        ("链", "鏈"),
        r"思维链|思維鏈|推理链|推理鏈|思考链|思考鏈|链式思[维考]|鏈式思[維考]",
    ),
    _cue(
        "zh_step_by_step",
        0.35,
        ("步", "循序"),
        r"逐步|一步一步|一步步|分步|循序渐进|循序漸進|按步骤|按步驟",
    ),
    _cue(
        "zh_explain_why",
        0.2,
        ("为什么", "為什麼", "原因"),
        r"(?:解释|解釋|说明|說明)[^。！？\n]{0,4}(?:为什么|為什麼|原因)",
    ),
    _cue(
        "zh_always_reason",
        0.5,
        (
            "始终",
            "始終",
            "总是",
            "總是",
            "每次",
            "务必",
            "務必",
            "必须",
            "必須",
            "一律",
            "永远",
            "永遠",
            "不要省略",
        ),
        r"(?:始终|始終|总是|總是|每次|务必|務必|必须|必須|一律|永远|永遠|不要省略)[^。\n]{0,20}?"
        r"(?:推理|思考|思路|步骤|步驟|过程|過程)",
    ),
    # --- Spanish
    _cue(
        "es_show_full_reasoning",
        0.7,
        ("razon", "pensamiento", "deducci", "lógica", "logica"),
        rf"\b{_ES_VERB}\s+{_W}{{0,4}}{_ES_QUANT}\s+{_W}{{0,3}}{_ES_REASONING}"
        rf"|\b{_ES_VERB}\s+{_W}{{0,3}}{_ES_REASONING}\s+{_W}{{0,2}}{_ES_QUANT}\b",
    ),
    _cue(
        "es_show_reasoning",
        0.4,
        ("razon", "pensamiento"),
        rf"\b{_ES_VERB}\s+{_W}{{0,3}}{_ES_REASONING}",
    ),
    _cue(
        "es_chain_of_thought",
        0.6,
        ("cadena", "razon"),
        r"cadena\s+de\s+pensamiento|razonamiento\s+interno",
    ),
    _cue("es_step_by_step", 0.35, ("paso",), r"\bpaso\s+(?:a|por)\s+paso\b"),
    # --- German
    _cue(
        "de_show_full_reasoning",
        0.7,
        ("denk", "gedank", "überleg", "lösungsweg", "begründ", "schritt"),
        rf"\b{_DE_VERB}\s+{_W}{{0,5}}{_DE_QUANT}\s+{_W}{{0,2}}{_DE_REASONING}"
        rf"|\b{_DE_VERB}\s+{_W}{{0,3}}{_DE_REASONING}\s+{_W}{{0,2}}{_DE_QUANT}",
    ),
    _cue(
        "de_show_reasoning",
        0.4,
        ("denk", "gedank", "überleg", "lösungsweg"),
        r"\b"
        + _DE_VERB
        + r"\s+"
        + _W
        + r"{0,3}(?:denkprozess|gedankengang|denkweise|überlegungen|lösungsweg|gedankenkette)",
    ),
    _cue("de_chain_of_thought", 0.6, ("kette",), r"gedankenkette|denkkette"),
    _cue(
        "de_step_by_step", 0.35, ("schritt",), r"\bschritt[\s-]+für[\s-]+schritt\b|\bschrittweise\b"
    ),
    # --- Japanese
    _cue(
        "ja_show_full_reasoning",
        0.7,
        ("思考", "推論", "考え", "途中式"),
        rf"{_JA_REASONING}[^。！？\n]{{0,6}}?{_JA_QUANT}[^。！？\n]{{0,6}}?{_JA_VERB}"
        rf"|{_JA_QUANT}[^。！？\n]{{0,4}}?{_JA_REASONING}[^。！？\n]{{0,6}}?{_JA_VERB}",
    ),
    _cue(
        "ja_show_reasoning",
        0.4,
        ("思考", "推論", "考え", "途中式"),
        rf"{_JA_REASONING}[^。！？\n]{{0,6}}?{_JA_VERB}",
    ),
    _cue(
        "ja_chain_of_thought",
        0.6,
        ("連鎖", "チェーン"),
        r"思考の連鎖|思考連鎖|チェーン・?オブ・?ソート",
    ),
    _cue(
        "ja_step_by_step",
        0.35,
        ("ステップ", "段階", "一歩", "順を追"),
        r"ステップ・?バイ・?ステップ|段階的に|一歩ずつ|一歩一歩|順を追って|ステップごとに",
    ),
    # --- Russian
    _cue(
        "ru_show_full_reasoning",
        0.7,
        ("рассужд", "мысл", "логик"),
        rf"\b{_RU_VERB}\s+{_W}{{0,4}}{_RU_QUANT}\s+{_W}{{0,2}}{_RU_REASONING}"
        rf"|\b{_RU_VERB}\s+{_W}{{0,3}}{_RU_REASONING}\s+{_W}{{0,2}}{_RU_QUANT}",
    ),
    _cue(
        "ru_show_reasoning",
        0.4,
        ("рассужд", "мысл"),
        rf"\b{_RU_VERB}\s+{_W}{{0,3}}(?:рассуждени\w*|ход\w*\s+мысл\w*|ход\w*\s+рассуждений)",
    ),
    _cue(
        "ru_chain_of_thought",
        0.6,
        ("цеп",),
        r"цепочк\w*\s+(?:рассуждений|мысл\w*)|цепь\s+рассуждений",
    ),
    _cue(
        "ru_step_by_step",
        0.35,
        ("шаг", "поэтапно"),
        r"шаг\s+за\s+шагом|пошагово|поэтапно|по\s+шагам",
    ),
    # --- Korean
    _cue(
        "ko_show_full_reasoning",
        0.7,
        ("추론", "사고", "생각", "풀이", "논리"),
        rf"{_KO_QUANT}\s*[^.!?\n]{{0,6}}?{_KO_REASONING}[^.!?\n]{{0,8}}?{_KO_VERB}"
        rf"|{_KO_REASONING}[^.!?\n]{{0,4}}?{_KO_QUANT}\s*[^.!?\n]{{0,4}}?{_KO_VERB}",
    ),
    _cue(
        "ko_show_reasoning",
        0.4,
        ("추론", "사고", "생각", "풀이"),
        r"(?:추론|사고|생각|풀이)\s*(?:과정|흐름)[^.!?\n]{0,8}?" + _KO_VERB,
    ),
    _cue("ko_chain_of_thought", 0.6, ("사슬",), r"(?:사고|생각)의?\s*사슬"),
    _cue(
        "ko_step_by_step",
        0.35,
        ("단계", "차근", "스텝"),
        r"단계\s*별로|단계적으로|차근차근|한\s*단계씩|스텝\s*바이\s*스텝",
    ),
)

_HARVEST_CUES: tuple[_Cue, ...] = (
    _cue(
        "training_data_purpose",
        0.6,
        ("train", "tun", "sft", "distill", "rlhf", "dpo"),
        r"\b(?:as|for|into|to\s+(?:use|be\s+used)\s+as|suitable\s+(?:as|for)|usable\s+as|for\s+use\s+as|"
        r"to\s+(?:train|fine[\s-]?tune))\s+(?:\w+\s+){0,3}(?:training|fine[\s-]?tuning|finetuning|sft|"
        r"distillation|instruction[\s-]tuning|rlhf|dpo)\s+(?:data|dataset|corpus|examples|samples|set|pairs)",
    ),
    _cue(
        "instruction_response_pairs",
        0.6,
        ("pair", "q&a", "qa "),
        r"\b(?:instruction|prompt|question|query|input|user)\s*[-/&]?\s*(?:and\s+)?[-/]?\s*(?:response|answer|"
        r"completion|output|reply|assistant)\s+pairs?\b|\bq\s*&\s*a\s+pairs?\b|\bqa\s+pairs?\b",
    ),
    _cue(
        "generate_many_examples",
        0.2,
        ("example", "sample", "pair", "conversation", "dialog", "entr", "record"),
        r"\b(?:generate|create|produce|write|give\s+me|synthesi[sz]e|make)\s+(?:\w+\s+){0,2}(?:\d+|dozens\s+of|"
        r"hundreds\s+of|thousands\s+of|many|multiple|a\s+batch\s+of|a\s+list\s+of|several)\s+(?:\w+\s+){0,3}"
        r"(?:examples|samples|pairs|conversations|dialogues|dialogs|entries|records)\b",
    ),
    _cue(
        "high_quality_answers",
        0.35,
        ("high-quality", "high quality", "gold"),
        r"\b(?:high[\s-]quality|gold[\s-]standard)\s+(?:\w+\s+)?(?:answers|responses|examples|completions|"
        r"data|outputs|samples|demonstrations)",
    ),
    _cue(
        "synthetic_data",
        0.45,
        ("synthetic", "train", "distill"),
        r"\bsynthetic\s+(?:data|dataset|examples|training)|\b(?:dataset|corpus)\s+(?:for|to)\s+"
        r"(?:train|fine[\s-]?tun)|\btrain\s+(?:my|our|a)\s+(?:own\s+)?(?:model|llm|small\s+model|student)"
        r"|\bdistill(?:ation|ing)?\b",
    ),
    _cue(
        "dataset_format",
        0.25,
        ("json", "instruction", "completion"),
        r"\bjsonl\b|\bjson\s+lines\b|[\"'](?:instruction|prompt)[\"']\s*[:,].{0,60}?[\"'](?:response|output|completion)[\"']",
    ),
    _cue(
        "training_data_mention",
        0.2,
        ("train", "tun", "sft"),
        r"\btraining\s+(?:data|set|corpus|examples)\b|\bfine[\s-]?tuning\s+(?:data|dataset|set)\b|\bsft\s+data\b",
    ),
    _cue(
        "zh_training_data",
        0.5,
        ("训练", "訓練", "微调", "微調", "数据集", "數據集"),
        r"训练数据|訓練數據|训练集|訓練集|微调数据|微調數據|数据集|數據集|蒸馏|蒸餾",
    ),
    _cue(
        "zh_pairs",
        0.5,
        ("对", "對"),
        r"(?:指令|问题|問題|提问|提問)[^。\n]{0,4}(?:回答|回复|回覆|响应|響應|输出|輸出|答案)对|问答对|問答對",
    ),
    _cue(
        "zh_high_quality",
        0.3,
        ("高质量", "高質量"),
        r"高质量的?(?:回答|答案|数据|样本|示例)|高質量的?(?:回答|答案|數據|樣本|示例)",
    ),
    _cue(
        "other_lang_training_data",
        0.55,
        (
            "entrenamiento",
            "training",
            "trainings",
            "学習",
            "訓練",
            "ファイン",
            "обуч",
            "학습",
            "훈련",
            "파인",
            "paare",
            "pares",
        ),
        r"datos\s+de\s+entrenamiento|pares\s+de\s+(?:instrucci[oó]n|pregunta)|trainingsdaten|"
        r"frage-antwort-paare|学習データ|訓練データ|学習用データ|ファインチューニング|обучающ\w*\s+(?:данн|выборк)|"
        r"данн\w*\s+для\s+обучения|학습\s*데이터|훈련\s*데이터|파인\s*튜닝",
    ),
)


def _normalise(text: str) -> str:
    s = text[:MAX_TEXT_CHARS].lower()
    if "’" in s:
        s = s.replace("’", "'")
    return s


# Every cue phrase sits inside one clause, so texts are scored clause by clause: a regex
# only runs over a clause that holds one of its anchors, and a template's instruction clauses
# repeat verbatim across its requests (the filled slots sit in other clauses), so what a
# clause matches is cached.
_CLAUSE_END = re.compile(r"[.!?;\n。！？；]")


# --- anchor scan ----------------------------------------------------------------------
# Which anchors a text holds decides which cues can match at all, and most texts hold
# none, so this scan is most of the cost of scoring: ~130 substring searches per text
# done naively. Almost every anchor has no whitespace, so it occurs in a text exactly
# when it occurs in one of the text's words; prompts reuse a small vocabulary, so the
# anchors inside each word are cached and a text costs one split and one lookup a word.
# The words that cues require are scanned for in the same way.


_Trie = dict[str, "_Trie"]


def _trie_alternation(words: Iterable[str]) -> str:
    """A regex alternation of ``words`` shaped as a trie, matching the longest one."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def alternation(node: _Trie) -> str:
        branches = [re.escape(c) + alternation(child) for c, child in sorted(node.items()) if c]
        if "" in node:
            # Greedy, so the longer word wins; ending here is tried last.
            return f"(?:{'|'.join(branches)})?" if branches else ""
        return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"

    return alternation(trie)


_ALL_CUES = _ELICITATION_CUES + _HARVEST_CUES
_SCANNED = sorted({word for cue in _ALL_CUES for word in cue.anchors + cue.requires})
_SPANNING = tuple(a for a in _SCANNED if a.split() != [a])  # "high quality", "qa "
assert not any(word in _SPANNING for cue in _ALL_CUES for word in cue.requires)
_IN_WORDS = [a for a in _SCANNED if a not in _SPANNING]
# For a word not seen yet: one regex finds, at each position, the longest anchor starting
# there. Its matches do not overlap, so an anchor is also in the word when it lies inside
# a match (it is then a substring of the matched anchor) or starts inside one and runs
# past its end (checked with `in`, for the anchor pairs where that can happen).
_LONGEST_ANCHOR = re.compile(_trie_alternation(_IN_WORDS))
_ANCHORS_INSIDE = {a: tuple(b for b in _IN_WORDS if b in a) for a in _IN_WORDS}
_ANCHORS_RUNNING_PAST = {
    a: tuple(
        b for b in _IN_WORDS if b not in a and any(b.startswith(a[k:]) for k in range(1, len(a)))
    )
    for a in _IN_WORDS
}
# Words met so far, by whether they hold an anchor: most hold none, and a C-level filter
# drops those. Bounded together (cleared wholesale when full), and long words are not
# kept, so that hostile text cannot make the caches big.
_ANCHORS_BY_WORD: dict[str, frozenset[str]] = {}
_WORDS_WITHOUT_ANCHORS: set[str] = set()
_WORD_CACHE_MAX = 1 << 16
_CACHED_WORD_MAX_LEN = 64


def _anchors_in_word(word: str) -> frozenset[str]:
    """The anchors in a word not met before, remembered for the next time."""
    present: set[str] = set()
    for longest in set(_LONGEST_ANCHOR.findall(word)):
        present.update(_ANCHORS_INSIDE[longest])
        present.update(b for b in _ANCHORS_RUNNING_PAST[longest] if b in word)
    anchors = frozenset(present)
    if len(word) <= _CACHED_WORD_MAX_LEN:
        if len(_ANCHORS_BY_WORD) + len(_WORDS_WITHOUT_ANCHORS) >= _WORD_CACHE_MAX:
            _ANCHORS_BY_WORD.clear()
            _WORDS_WITHOUT_ANCHORS.clear()
        if anchors:
            _ANCHORS_BY_WORD[word] = anchors
        else:
            _WORDS_WITHOUT_ANCHORS.add(word)
    return anchors


def _anchors_in(text: str) -> frozenset[str]:
    """Every anchor and required word (of any cue) that occurs in ``text``."""
    present: set[str] = set()
    for word in filterfalse(_WORDS_WITHOUT_ANCHORS.__contains__, text.split()):
        anchors = _ANCHORS_BY_WORD.get(word)
        present |= anchors if anchors is not None else _anchors_in_word(word)
    for anchor in _SPANNING:
        if anchor in text:
            present.add(anchor)
    return frozenset(present)


# --- scoring --------------------------------------------------------------------------
# Which cues need a regex search depends on the anchors present alone, and texts hold
# few distinct combinations, so that choice is made once per combination.


class _Plan(NamedTuple):
    elicitation: tuple[_Cue, ...]  # in cue order
    harvest: tuple[_Cue, ...]


_PLANS: dict[frozenset[str], _Plan] = {}
_PLANS_MAX = 4096


def _plan(present: frozenset[str]) -> _Plan:
    plan = _PLANS.get(present)
    if plan is None:
        plan = _Plan(_candidates(_ELICITATION_CUES, present), _candidates(_HARVEST_CUES, present))
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[present] = plan
    return plan


def _candidates(cues: tuple[_Cue, ...], present: frozenset[str]) -> tuple[_Cue, ...]:
    return tuple(
        cue
        for cue in cues
        if not present.isdisjoint(cue.anchors)
        and (not cue.requires or not present.isdisjoint(cue.requires))
    )


# Per clause: the (group, weight) of each cue group it matches, strongest phrasing only, for
# elicitation and for harvest. Bounded (cleared wholesale when full); long clauses are not
# kept, so hostile text cannot make the cache big.
_Found = tuple[tuple[str, float], ...]
_CLAUSES: dict[str, tuple[_Found, _Found]] = {}
_CLAUSES_MAX = 1 << 14
_CACHED_CLAUSE_MAX_LEN = 512
_NOTHING: tuple[_Found, _Found] = ((), ())


def _clause_weights(clause: str) -> tuple[_Found, _Found]:
    found = _CLAUSES.get(clause)
    if found is None:
        present = _anchors_in(clause)
        if present:
            plan = _plan(present)
            found = (_matched(plan.elicitation, clause), _matched(plan.harvest, clause))
        else:
            found = _NOTHING
        if len(clause) <= _CACHED_CLAUSE_MAX_LEN:
            if len(_CLAUSES) >= _CLAUSES_MAX:
                _CLAUSES.clear()
            _CLAUSES[clause] = found
    return found


def _matched(cues: tuple[_Cue, ...], clause: str) -> _Found:
    best: dict[str, float] = {}
    for cue in cues:
        if best.get(cue.group, 0.0) >= cue.weight:
            continue  # a stronger phrasing of the same request already matched
        if cue.pattern.search(clause):
            best[cue.group] = cue.weight
    return tuple(best.items())


_NO_WEIGHTS: tuple[dict[str, float], dict[str, float]] = ({}, {})


def _text_weights(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """Elicitation and harvest group weights of a normalised text (fresh dicts)."""
    elicitation: dict[str, float] = {}
    harvest: dict[str, float] = {}
    for clause in _CLAUSE_END.split(text):
        if not clause:
            continue
        found_elicitation, found_harvest = _clause_weights(clause)
        for group, weight in found_elicitation:
            if weight > elicitation.get(group, 0.0):
                elicitation[group] = weight
        for group, weight in found_harvest:
            if weight > harvest.get(group, 0.0):
                harvest[group] = weight
    return elicitation, harvest


# System prompts repeat verbatim across an integration's requests, so their boosted group
# weights are cached (bounded; cleared wholesale when full). Prompts are not.
_SYSTEM_CACHE: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
_SYSTEM_CACHE_MAX = 1024


def _system_weights(system: str) -> tuple[dict[str, float], dict[str, float]]:
    """Boosted elicitation and harvest group weights of a system prompt (cached: read only)."""
    key = system[:MAX_TEXT_CHARS]
    weights = _SYSTEM_CACHE.get(key)
    if weights is None:
        elicitation, harvest = _text_weights(_normalise(key))
        weights = (_boosted(elicitation), _boosted(harvest))
        if len(_SYSTEM_CACHE) >= _SYSTEM_CACHE_MAX:
            _SYSTEM_CACHE.clear()
        _SYSTEM_CACHE[key] = weights
    return weights


def _boosted(found: dict[str, float]) -> dict[str, float]:
    return {g: 1.0 - (1.0 - w) ** SYSTEM_PROMPT_BOOST for g, w in found.items()}


def _score(weights: dict[str, float], system_weights: dict[str, float]) -> float:
    """Combine prompt cues (``weights``, updated in place) with boosted system cues."""
    for group, boosted in system_weights.items():
        if boosted > weights.get(group, 0.0):
            weights[group] = boosted
    miss = 1.0
    for w in weights.values():
        miss *= 1.0 - w
    return 1.0 - miss


class CueScores(NamedTuple):
    """How a request reads, each in [0, 1].

    `elicitation`: how hard it asks for exposed step-by-step reasoning. A single casual cue
    ("let's think step by step") scores ~0.35, a strong one ("show all your reasoning",
    "请展示完整推理过程") ~0.7, an instruction in the system prompt more, and distinct cues
    stack towards 1. Seven languages are covered: English, Chinese, Spanish, German,
    Japanese, Russian, Korean.

    `harvest`: how much it reads as harvesting training data. Separate from elicitation
    because harvesters ask for answers in bulk ("generate instruction/response pairs as
    training data") without asking for reasoning, and the policy may treat the two
    differently."""

    elicitation: float
    harvest: float


_NO_CUES = CueScores(0.0, 0.0)


def cue_scores(prompt: str | None, system: str | None) -> CueScores:
    """Both scores of one request (see CueScores).

    The features of every request need both, and most of their cost (normalising the
    text, finding which cue anchors it holds) is shared, so it is paid once here.
    """
    elicitation, harvest = _text_weights(_normalise(prompt)) if prompt else ({}, {})
    if not system:
        if not (elicitation or harvest):
            return _NO_CUES  # most requests
        system_elicitation, system_harvest = _NO_WEIGHTS
    else:
        system_elicitation, system_harvest = _system_weights(system)
    return CueScores(_score(elicitation, system_elicitation), _score(harvest, system_harvest))
