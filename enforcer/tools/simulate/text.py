"""Words, slot filling and the prompts people write: the text that is not an attack."""

from __future__ import annotations

import random
import re


def _words(text: str) -> tuple[str, ...]:
    """A word list written as prose, which is easier to read and extend than a literal."""
    return tuple(text.split())


def _phrases(text: str) -> tuple[str, ...]:
    """Phrases separated by "|" (spaces kept), packed like prose instead of one per line."""
    return tuple(text.split("|"))


# --- vocabulary ------------------------------------------------------------------------
# Enough words that human and batch payloads rarely repeat a skeleton.


_NOUNS = _words(
    "apple river database kitten garden laptop router budget meeting contract violin tomato "
    "bicycle vaccine spreadsheet neuron galaxy recipe insurance passport mortgage battery printer "
    "dragon castle pipeline server protein glacier volcano poem novel symphony startup invoice "
    "football marathon camera lens kernel thread socket compiler harbor lantern orchard teapot "
    "warehouse tractor satellite telescope ladder blanket carpet furnace chimney balcony wallet "
    "umbrella notebook pencil crayon canvas sculpture museum library stadium airport subway "
    "ferry tunnel bridge highway village county province embassy parliament senate court judge "
    "lawyer nurse doctor surgeon patient pharmacy clinic therapy diagnosis symptom allergy "
    "fever cough migraine vitamin mineral enzyme molecule atom electron photon quasar comet "
    "asteroid planet moon orbit rocket engine turbine piston gearbox clutch brake tire wheel "
    "fender bumper mirror window curtain pillow mattress drawer cabinet shelf counter sink "
    "faucet shower bathtub toilet towel soap shampoo razor brush comb wig hat scarf glove "
    "boot sandal sneaker jacket sweater hoodie shirt blouse skirt dress suit tie belt purse "
    "backpack suitcase ticket visa itinerary hotel hostel cabin tent campfire trail summit "
    "valley canyon desert oasis island lagoon reef coral whale dolphin shark octopus squid "
    "crab lobster shrimp salmon trout tuna sardine anchovy pasta risotto curry dumpling "
    "noodle burrito taco pizza bagel croissant muffin pancake waffle omelette salad soup stew "
    "sandwich burger steak chicken tofu lentil bean pepper onion garlic ginger basil mint "
    "thyme rosemary saffron vanilla cinnamon chocolate coffee espresso tea juice smoothie "
    "invoice receipt refund warranty subscription license patent trademark copyright merger "
    "dividend portfolio pension salary bonus tax audit ledger forecast quarter revenue margin "
    "customer supplier vendor shipment delivery courier parcel pallet container freight "
    "algorithm function variable loop array pointer cache queue stack heap graph tree node "
    "cluster container microservice endpoint gateway proxy firewall certificate token session "
    "cookie browser plugin widget dashboard report chart metric alert incident outage"
)
_VERBS = _words(
    "cook deploy install clean paint fix train compress sort merge debug plant charge freeze "
    "render parse upgrade migrate refactor translate summarize negotiate schedule cancel "
    "renew repair replace polish bake grill boil steam roast knit sew stitch weld sand varnish "
    "prune water harvest store ship track invoice audit review approve reject archive restore "
    "backup encrypt decrypt compile benchmark profile optimize configure monitor rotate"
)
_ADJECTIVES = _words(
    "quick quiet noisy cheap expensive fragile sturdy modern vintage tiny huge bright dark "
    "warm cold spicy sweet bitter sour crispy soggy fluffy sticky smooth rough shiny dull "
    "reliable flaky broken urgent overdue recurring annual monthly weekly daily remote local "
    "public private secure legacy experimental stable deprecated internal external mobile"
)
_PEOPLE = _words(
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert "
    "Sybil Trent Victor Walter Yusuf Zara Mei Hiroshi Priya Diego Lena Omar Ingrid Kwame Sofia"
)
_CITIES = _words(
    "Lisbon Kyoto Nairobi Toronto Austin Berlin Seoul Lima Oslo Hanoi Cairo Denver Porto "
    "Krakow Melbourne Montreal Istanbul Jakarta Bogota Dublin Prague Vienna Athens Chicago"
)
_LANGS_PROG = ("Python", "Rust", "Go", "TypeScript", "Java", "C++", "Kotlin", "SQL", "Bash", "Ruby")
_TOPICS = _phrases(
    "photosynthesis|inflation|black holes|the French Revolution|machine learning|climate change|"
    "the stock market|quantum computing|vaccines|plate tectonics|the Roman Empire|blockchain|"
    "nutrition|sleep|meditation|jazz history|renewable energy|supply chains|cryptography|"
    "urban planning|marine biology|game theory|the immune system|compilers|epidemiology|"
    "behavioral economics|organic chemistry|Renaissance art|volcanology|linguistics|probability|"
    "thermodynamics|cell biology|world war one|microeconomics|astronomy|operating systems|"
    "databases|ethics|social media|agriculture|architecture"
)
_TOPICS_ZH = _phrases("物理|化学|历史|经济学|机器学习|数学|生物|法律|医学|编程|天文学|心理学")


# Template slots filled by picking from a word pool.
_SLOT_POOLS: dict[str, tuple[str, ...]] = {
    "noun": _NOUNS,
    "noun2": _NOUNS,
    "verb": _VERBS,
    "adj": _ADJECTIVES,
    "city": _CITIES,
    "person": _PEOPLE,
    "topic": _TOPICS,
    "topic_zh": _TOPICS_ZH,
    "lang": _LANGS_PROG,
}


def _sentence(rng: random.Random) -> str:
    # random() indexing instead of rng.choice: this runs ~10 times per event.
    r = rng.random
    n, a, v = _NOUNS, _ADJECTIVES, _VERBS
    ln, la, lv = len(n), len(a), len(v)
    subject = f"{a[int(r() * la)]} {n[int(r() * ln)]}"
    action = f"{v[int(r() * lv)]}ed the {n[int(r() * ln)]}"
    place = f"{a[int(r() * la)]} {n[int(r() * ln)]}"
    outcome = f"the {n[int(r() * ln)]} was {a[int(r() * la)]}"
    return f"The {subject} {action} near the {place} before {outcome}."


def _payload(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


# --- human prompts -----------------------------------------------------------------


class _Slots(dict[str, str]):
    """Template slot values drawn on first use, so unused slots cost nothing."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        rng = self.rng
        pool = _SLOT_POOLS.get(key)
        value: str
        if pool is not None:
            value = rng.choice(pool)
        elif key == "n":
            value = str(rng.randrange(2, 12))
        elif key == "year":
            value = str(rng.randrange(1850, 2025))
        elif key == "sentence":
            value = _sentence(rng)
        elif key == "payload":
            value = _payload(rng, rng.randrange(1, 4))
        else:
            raise KeyError(key)
        self[key] = value
        return value


_PHRASING = re.compile(r"\[([^\]]*\|[^\]]*)\]")


def _fill(template: str, rng: random.Random) -> str:
    if "[" in template:
        template = _PHRASING.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    return template.format_map(_Slots(rng))


# [a|b|c] picks a phrasing, {slot} fills a value: people asking the same kind of thing
# word it differently, so their prompts are near, not exact, duplicates.
_CASUAL_EN = (
    "[what's|what is|got|do you know] a [good|simple|quick|healthy|cheap] recipe "
    "[for|with] {noun} [and|plus|or] {noun2} [that's|that is|which is] {adj}?",
    "[Can you|Could you|Please|pls] help me [write|draft|come up with] a "
    "[birthday|bday|birthday card] [message|note|text] for my "
    "[friend|sister|brother|coworker|dad|mom] {person} who "
    "[loves|is into|is crazy about] {noun}s?",
    "[how do I|how can I|what's the best way to|is there a way to] {verb} my {noun} "
    "without [damaging|ruining|breaking] the {noun2}",
    "[Explain|Describe|Tell me about] {topic} "
    "[like I'm five|in simple terms|for a kid|without jargon].",
    "[Write|Compose|Give me] a [short|little|tiny] [poem|verse|rhyme] about a {adj} {noun} "
    "in {city}.",
    "[What's|What is|Whats] the [difference|diff] between a {noun} and a {noun2}?",
    "[Give me|Plan|Make|Suggest] a {n}-day [itinerary|trip plan|travel plan] for {city} "
    "[on a budget|with kids|for foodies|in spring].",
    "My {noun} [is making|makes|started making] a {adj} [noise|sound] when I {verb} it, "
    "[what could be wrong|any idea why|is that bad]?",
    "[Summarize|Summarise|TL;DR|Give me the gist of] this[ for me|| please]: {payload}",
    "[Translate|Translate this|Put this] [to|into] [French|German|Spanish|Italian]: {sentence}",
    "Is it normal for [a cat|my dog|a puppy|a hamster] to {verb} [its|their] {noun} "
    "[every night|so often|all day]?",
    "[Suggest|Give me|Brainstorm] {n} [names|name ideas] for a {adj} {noun} "
    "[shop|store|brand] in {city}.",
    "how many [calories|carbs|grams of protein] [are in|in] a {adj} {noun}",
    "Help me [reply to|answer|respond to] this email [politely|firmly|quickly]: {payload}",
    "[What happened|What was going on|Anything important happened] in {year} in {city}?",
    "[Rewrite|Rephrase|Reword] this to sound more [professional|friendly|confident]: {payload}",
    "[Tell me|Give me|Share] a [fun|weird|surprising] fact about {topic}.",
    "[What should I|What do I need to|What to] [pack|bring|wear] "
    "[for a trip to|when visiting|for] {city} in [winter|summer|the rainy season|December]?",
    "[write|draft|help with] a cover letter for a {noun} [technician|manager|assistant] job "
    "at a {adj} {noun2} company",
    "can u explain {topic} [in simple words|quickly|briefly|like a teacher]",
    "I feel {adj} about my {noun}, [any advice|what should I do|thoughts]?",
    "[Recommend|Suggest|List] {n} [books|podcasts|videos] about {topic}.",
    "Make a [shopping|grocery] list for a {adj} {noun} [dinner|lunch|party] for {n} people.",
    "Is {topic} [related to|connected to|anything to do with] {noun2}s [somehow|at all]?",
    "[Plan|Make|Create] a {n}-week [workout|training|running] [routine|plan] for a beginner "
    "who [likes|enjoys|hates] {noun}s.",
    "What are the [pros and cons|upsides and downsides] of [buying|owning|renting] a {adj} {noun}?",
    "Write a [limerick|haiku|short story] about {person} and a {noun}.",
    "[Which|What] country is {city} in, and what is its capital?",
    "[Create|Make|Write] a quiz with {n} questions about {topic}[| for my class| for a party].",
    "[Why do|How come|Is it true that] {noun}s {verb} in the summer?",
    "hi",
    "thanks!",
    "What is the meaning of life?",
)
_CASUAL_OTHER: dict[str, tuple[str, ...]] = {
    "zh": (
        "[帮我|请帮我|能不能帮我]写一[封|段|条]给[朋友|同事|妈妈|老师]{person}的生日祝福，"
        "[他|她]喜欢{topic_zh}。",
        "{city}有什么[好吃的餐厅|好玩的地方|值得去的博物馆]推荐吗？",
        "如何[快速|高效|系统地]学习{topic_zh}？给我一个{n}[周|个月]的计划。",
        "请把这句话翻译成[英文|日文|法文]：[今天的天气很好|明天我们要开会|这家店的咖啡很好喝]。",
        "用[简单|通俗|有趣]的话解释一下{topic_zh}里[最重要|最难懂]的概念。",
        "我的[电脑|手机|路由器]很[慢|卡|热]，[怎么办|有什么办法]？",
        "[推荐|介绍]{n}本关于{topic_zh}的书。",
    ),
    "es": (
        "¿Cómo puedo [aprender|entender|estudiar] {topic} en {n} [semanas|meses]?",
        "[Escribe|Escríbeme|Haz] un poema [corto|divertido|triste] sobre {city}.",
        "¿Qué me recomiendas [visitar|comer|hacer] en {city}?",
        "[Resume|Resúmeme] este texto: {payload}",
        "¿Cuál es la diferencia entre {topic} y {noun}?",
    ),
    "de": (
        "Wie kann ich [meinen|den] {noun} am besten [reinigen|reparieren|lagern]?",
        "[Schreib|Schreibe] mir eine [kurze|lustige|nette] Geburtstagskarte für {person}.",
        "Was sind die [Vor- und Nachteile|Risiken] von {topic}?",
        "Erkläre mir {topic} in [einfachen Worten|drei Sätzen|Stichpunkten].",
        "Was kann man in {city} [unternehmen|essen|besichtigen]?",
    ),
    "ja": (
        "{city}で[おすすめの観光地|美味しいお店|行くべき場所]を{n}つ教えて。",
        "[簡単な|本格的な|ヘルシーな][カレー|パスタ|味噌汁]の作り方を教えてください。",
        "{topic}について[簡単に|わかりやすく|詳しく]説明してください。",
        "{person}さんへの[お礼|誕生日|お祝い]のメッセージを書いて。",
    ),
    "ru": (
        "Как [лучше|быстрее] [выучить|понять] {topic} за {n} [недель|месяцев]?",
        "Напиши [короткое|смешное|тёплое] поздравление с днём рождения для {person}.",
        "Что [посмотреть|попробовать|посетить] в {city}?",
        "Объясни {topic} [простыми словами|для школьника|кратко].",
    ),
    "ko": (
        "{city} [여행 코스|맛집|가볼 만한 곳] 추천해줘.",
        "{topic}에 대해 [쉽게|짧게|자세히] 설명해 줘.",
        "[생일 축하|감사|응원] 메시지 써줘, 친구 이름은 {person}이야.",
        "{n}일 동안 {city}에서 뭐 하면 좋을까?",
    ),
}
_POWER_EN = (
    "[Here is|Here's|This is|Below is] my {lang} code:\n```\ndef {verb}_{noun}(items):\n"
    "    return [x for x in items if x.{noun2} > {n}]\n```\n"
    "It [throws|raises|gives me] a TypeError when items contains None. "
    "[What's wrong and how do I fix it?|Why?|How do I fix it?]",
    "[Review|Check|Look at] this SQL query for [performance|correctness|index use]: "
    "```SELECT * FROM {noun}s JOIN {noun2}s ON {noun}s.id = {noun2}s.{noun}_id "
    "WHERE {noun2}s.created_at > now() - interval '{n} days'```",
    "[Draft|Write|Sketch] a design doc [outline|skeleton|proposal] for a {adj} {noun} service "
    "that [has to|must|needs to] {verb} {noun2}s at scale.",
    "Compare {lang} and [Go|Java|Elixir|C#] for [building|running|maintaining] a {adj} {noun} "
    "pipeline. [Consider latency, hiring and tooling.|Focus on cost.|We care about reliability.]",
    "I'm writing a [paper|thesis chapter|blog post] on {topic}. "
    "[Can you critique|Please review|Give feedback on] this paragraph: {payload}",
    "What are the [failure modes|risks|pitfalls] of [a|putting a] {adj} {noun} cache "
    "in front of a {noun2} database?",
    "[Derive|Find|Work out] the closed form of the sum of the first n [squares|cubes] and "
    "[check|verify|test] it for n = {n}.",
    "In {lang}, [how do I|what's the idiomatic way to|how can I] {verb} a [large|huge|10GB] "
    "{noun} file without loading it into memory?",
    "Prove that the square root of {n} is irrational"
    "[, or explain why the usual proof fails if it is not.|.| using contradiction.]",
    "[Write|Generate|Give me] unit tests in {lang} for a function that {verb}s {noun}s by {noun2}.",
    "My regression on {noun} prices has R^2 of 0.{n}{n} but residuals look {adj}. "
    "[What should I check?|Is that a problem?|What now?]",
    "[Explain|Compare|What are] the tradeoffs between eventual and strong consistency "
    "for a {noun} [store|service|app].",
    "[Summarize|List] the key arguments of this [article|paper|memo] and "
    "[list open questions|note weaknesses]: {payload}",
    "Help me plan a migration of our {adj} {noun} service from {lang} to "
    "[Go|Rust|Java|the cloud] over {n} [sprints|months|weeks].",
    "What is the [time|space] complexity of {verb}ing a {noun} tree with n nodes, "
    "and can it be improved?",
    "I have a dataframe with columns {noun}, {noun2} and [revenue|cost|count]. "
    "How do I [compute|get|plot] a rolling {n}-day mean per {noun}?",
    "Why does my {lang} service [leak memory|slow down|crash] when it {verb}s {noun}s in a "
    "loop? [Heap profile shows {noun2} objects.|Any ideas?]",
    "[Write|Draft|Improve] a {adj} README section explaining how to {verb} the {noun} module.",
)
# How power users (and students) casually ask for reasoning; one phrase per prompt.
_CASUAL_COT_SUFFIXES = (
    " Let's think step by step.",
    " Think step by step.",
    " Please explain your reasoning.",
    " Can you explain why?",
    " Walk me through it.",
    " Show your work.",
    " Explain step by step please.",
)
_CASUAL_COT_SUFFIXES_ZH = (" 请一步一步思考。", " 请解释一下为什么。")
_ALL_COT_SUFFIXES = _CASUAL_COT_SUFFIXES + _CASUAL_COT_SUFFIXES_ZH


# People rarely phrase the same request the same way twice: optional openers, context
# and closers, and sloppy casing keep human skeletons from repeating across users at
# rates that only templated automation reaches.
_OPENERS = _phrases(
    "hey, |Hi! |quick question: |pls |Hello. |ok so |Question - |I need help. |Can you help? |"
    "random thought: |for work: |my teacher asked: |hmm, |Good morning! |So, |Help! |yo |"
    "Dear assistant, |One more thing: |Follow-up: |Serious question: |Asking for a friend: |"
    "Sorry if this is dumb, but |Okay, new topic. |Hi there, |Hey! |need a hand: |Quick one - |"
    "urgent: |just curious, |Hello again. |Morning. |Please help: |Another question: |hiya |"
    "My boss wants to know: "
)
_CONTEXTS = _phrases(
    "I'm a {adj} {noun} owner. |Context: we just moved to {city}. |"
    "I've been stuck on this for {n} days. |Background: I work with {noun}s and {noun2}s. |"
    "Some context: {sentence} |I live in {city}. |My {noun} broke yesterday. |"
    "I'm new to {topic}. |We have {n} kids. |I study {topic}. |Our team uses {lang}. |"
    "I run a small {noun} business. |My friend {person} recommended you. |I tried googling it. |"
    "It's for a school project on {topic}. |I have an exam on {topic} soon. "
)
_CLOSERS = _phrases(
    " thanks| Thanks!| keep it short.| in {n} sentences please| asap| (no jargon)| Be concise.|"
    " with examples| ty| :)| Answer in bullet points.| thank you so much| Much appreciated.| lol|"
    " if possible| Short answer please.| Cheers.| in plain English| for a beginner|"
    " no more than {n} lines| and cite sources| explain simply| ?|!!| Please be brief.| Thx.|"
    " (for a blog post)| make it fun| in a table| with a summary at the end| in a friendly tone|"
    " Thanks in advance.| keep it under {n}0 words"
)


def _human_prompt(rng: random.Random, language: str, power: bool, cot_habit: float) -> str:
    if language != "en" and rng.random() < 0.85:
        text = _fill(rng.choice(_CASUAL_OTHER[language]), rng)
        if cot_habit and rng.random() < cot_habit:
            text += rng.choice(
                _CASUAL_COT_SUFFIXES_ZH if language == "zh" else _CASUAL_COT_SUFFIXES
            )
        return text
    body = rng.choice(_POWER_EN) if power and rng.random() < 0.8 else rng.choice(_CASUAL_EN)
    r = rng.random
    opener = rng.choice(_OPENERS) if r() < 0.35 else ""
    context = rng.choice(_CONTEXTS) if r() < 0.15 else ""
    closer = rng.choice(_CLOSERS) if r() < 0.3 else ""
    text = _fill(opener + context + body + closer, rng)
    if rng.random() < 0.2:
        text = text.lower()
    if cot_habit and rng.random() < cot_habit:
        text += rng.choice(_CASUAL_COT_SUFFIXES)
    return text
