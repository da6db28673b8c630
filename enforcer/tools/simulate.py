"""Labeled synthetic gateway traffic: benign populations and distillation attacks.

Detectors and policies are judged on traffic where the truth is known. This module
produces ``gateway_event.v1`` dicts for a mix of benign users (including the ones
that look like attackers on one axis: students who write "think step by step",
high-volume batch jobs, templated benchmark harnesses, neighbours on an attacker's
network) and the attacks described in ``DOMAIN.md`` (a loud bulk scraper, a hydra
proxy network of hundreds of low-rate keys, a slow synonym-swapping extractor,
and a training-data harvester).

Honesty rules: events carry only fields a real gateway would log. API keys and
account ids are random-looking, nothing in an event names its population, and
attack traffic differs only in its behaviour (content, timing, networks, token
counts). The truth lives in the separate labels mapping.

Determinism: every population draws from its own ``random.Random`` seeded from
``(seed, population)`` and every key from its own generator, so a run is a pure
function of its config and choosing a subset of populations does not change the
others' traffic. IP addresses are synthetic, drawn inside ASNs of real-world kinds;
they are not real allocations.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "ALL_POPULATIONS",
    "ATTACK_POPULATIONS",
    "BENIGN_POPULATIONS",
    "BULK_SCRAPER",
    "CASUAL",
    "ENTERPRISE_BATCH",
    "EVAL_HARNESS",
    "HARVESTER",
    "HYDRA",
    "NAT_NEIGHBOUR",
    "POWER_USER",
    "SLOW_EXTRACTOR",
    "SimulationConfig",
    "generate",
    "iter_events",
    "labels_for",
    "write",
]

CASUAL = "casual"
POWER_USER = "power_user"
ENTERPRISE_BATCH = "enterprise_batch"
EVAL_HARNESS = "eval_harness"
NAT_NEIGHBOUR = "nat_neighbour"
BULK_SCRAPER = "bulk_scraper"
HYDRA = "hydra"
SLOW_EXTRACTOR = "slow_extractor"
HARVESTER = "harvester"

BENIGN_POPULATIONS: tuple[str, ...] = (
    CASUAL,
    POWER_USER,
    ENTERPRISE_BATCH,
    EVAL_HARNESS,
    NAT_NEIGHBOUR,
)
ATTACK_POPULATIONS: tuple[str, ...] = (BULK_SCRAPER, HYDRA, SLOW_EXTRACTOR, HARVESTER)
ALL_POPULATIONS: tuple[str, ...] = BENIGN_POPULATIONS + ATTACK_POPULATIONS

# Keys per population at scale=1.0. With the per-key rates below, 30 minutes give
# ~170k events (~95/s; other seeds within about 5%), under a fifth of them attacks.
_BASE_KEYS: dict[str, int] = {
    CASUAL: 5500,
    POWER_USER: 1100,
    ENTERPRISE_BATCH: 4,
    EVAL_HARNESS: 4,
    NAT_NEIGHBOUR: 160,
    BULK_SCRAPER: 2,
    HYDRA: 300,
    SLOW_EXTRACTOR: 5,
    HARVESTER: 6,
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Every run with the same config yields the same events."""

    duration_s: float = 1800.0
    start_ts: float = 1_790_000_000.0
    seed: int = 7
    # Multiplies the number of keys of every population (at least one key each);
    # per-key rates stay human or machine-like whatever the scale.
    scale: float = 1.0
    populations: tuple[str, ...] = ALL_POPULATIONS

    def __post_init__(self) -> None:
        unknown = set(self.populations) - set(ALL_POPULATIONS)
        if unknown:
            raise ValueError(f"unknown populations: {sorted(unknown)}")
        if self.duration_s <= 0 or self.scale <= 0:
            raise ValueError("duration_s and scale must be positive")


def _words(text: str) -> tuple[str, ...]:
    """A word list written as prose, which is easier to read and extend than a literal."""
    return tuple(text.split())


def _phrases(text: str) -> tuple[str, ...]:
    """Phrases separated by "|" (spaces kept), packed like prose instead of one per line."""
    return tuple(text.split("|"))


# --- networks -----------------------------------------------------------------------
# (asn, country, kind). Real-world ASN numbers of well-known ISPs and clouds give the
# data a familiar shape; the addresses inside them are synthetic.

_RESIDENTIAL = "residential"
_MOBILE = "mobile"
_CLOUD = "cloud"
_UNIVERSITY = "university"

# asn country kind; 64500 is a documentation-range ASN standing in for a campus network.
_NETWORK_TEXT = """
    7922 US residential   7018 US residential   701 US residential   20115 US residential
    22773 US residential   21928 US mobile   6167 US mobile   812 CA residential
    577 CA residential   3320 DE residential   3209 DE residential   3215 FR residential
    12322 FR residential   2856 GB residential   5089 GB residential   3352 ES residential
    3269 IT residential   1136 NL residential   5617 PL residential   15895 UA mobile
    12389 RU residential   8359 RU mobile   9121 TR residential   4134 CN residential
    4837 CN residential   9808 CN mobile   4760 HK residential   3462 TW residential
    2516 JP residential   4713 JP residential   4766 KR residential   9318 KR residential
    55836 IN mobile   24560 IN residential   7473 SG residential   45899 VN residential
    7713 ID residential   9299 PH residential   28573 BR residential   18881 BR residential
    8151 MX residential   7303 AR residential   1221 AU residential   36935 EG mobile
    37100 ZA residential   16509 US cloud   15169 US cloud   8075 US cloud
    14061 US cloud   24940 DE cloud   16276 FR cloud   63949 US cloud
    20473 US cloud   45102 CN cloud   132203 CN cloud   64500 US university
"""


def _network_table(text: str) -> tuple[tuple[int, str, str], ...]:
    words = text.split()
    return tuple((int(words[i]), words[i + 1], words[i + 2]) for i in range(0, len(words), 3))


_NETWORK_TABLE = _network_table(_NETWORK_TEXT)
_CLOUD_FOR_BATCH = 16509
_CLOUD_FOR_SCRAPER = 24940
_CLOUDS_FOR_HARVESTER = (14061, 20473)

# Where human users live: country, relative share of users, UTC offset in hours (for
# the daily cycle), and the language most of its non-English prompts are written in.
_COUNTRY_TEXT = """
    US 30 -6 en    IN 8 5 en      GB 5 0 en      DE 5 1 de      CA 3 -5 en
    FR 3 1 en      BR 4 -3 en     JP 4 9 ja      KR 3 9 ko      CN 6 8 zh
    HK 1 8 zh      TW 1 8 zh      ES 2 1 es      IT 2 1 en      NL 1 1 en
    PL 1 1 en      RU 2 3 ru      UA 1 2 ru      TR 1 3 en      AU 2 10 en
    SG 1 8 en      VN 1 7 en      ID 2 7 en      PH 1 8 en      MX 2 -6 es
    AR 1 -3 es     EG 1 2 en      ZA 1 2 en
"""
_COUNTRY_ROWS = [_COUNTRY_TEXT.split()[i : i + 4] for i in range(0, len(_COUNTRY_TEXT.split()), 4)]
_USER_COUNTRIES: tuple[tuple[str, float], ...] = tuple(
    (c, float(w)) for c, w, _, _ in _COUNTRY_ROWS
)
_UTC_OFFSET_H: dict[str, int] = {c: int(h) for c, _, h, _ in _COUNTRY_ROWS}
_COUNTRY_LANGUAGE: dict[str, str] = {c: lang for c, _, _, lang in _COUNTRY_ROWS if lang != "en"}
_PUBLIC_FIRST_OCTETS = tuple(
    o for o in range(2, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)
)


@dataclass(frozen=True)
class _Network:
    asn: int
    country: str
    kind: str
    v4_16s: tuple[tuple[int, int], ...]  # /16 prefixes
    v6_32: tuple[int, int]  # first two hextets


@dataclass(frozen=True)
class _Endpoint:
    """Where a request comes from, as the gateway sees it."""

    ip: str
    asn: int
    country: str


class _Networks:
    """Synthetic address plan: a few /16s and one IPv6 /32 per ASN."""

    def __init__(self, rng: random.Random) -> None:
        used: set[tuple[int, int]] = set()
        self.by_asn: dict[int, _Network] = {}
        for asn, country, kind in _NETWORK_TABLE:
            prefixes: list[tuple[int, int]] = []
            while len(prefixes) < 3:
                p = (rng.choice(_PUBLIC_FIRST_OCTETS), rng.randrange(256))
                if p not in used:
                    used.add(p)
                    prefixes.append(p)
            v6 = (rng.randrange(0x2001, 0x2A10), rng.randrange(0x10000))
            self.by_asn[asn] = _Network(asn, country, kind, tuple(prefixes), v6)
        self.residential_by_country: dict[str, list[_Network]] = {}
        self.mobile_by_country: dict[str, list[_Network]] = {}
        for net in self.by_asn.values():
            if net.kind == _RESIDENTIAL:
                self.residential_by_country.setdefault(net.country, []).append(net)
            elif net.kind == _MOBILE:
                self.mobile_by_country.setdefault(net.country, []).append(net)
        self.residential = [n for n in self.by_asn.values() if n.kind in (_RESIDENTIAL, _MOBILE)]
        self.clouds = [n for n in self.by_asn.values() if n.kind == _CLOUD]
        # Shared /24s: the bulk scraper's rented servers and a campus NAT, each with
        # benign neighbours; the campus NAT also carries some of the hydra's proxies.
        self.scraper_24 = self._random_24(rng, self.by_asn[_CLOUD_FOR_SCRAPER])
        self.campus_24 = self._random_24(rng, self.by_asn[64500])

    @staticmethod
    def _random_24(rng: random.Random, net: _Network) -> tuple[int, int, int]:
        a, b = rng.choice(net.v4_16s)
        return a, b, rng.randrange(256)

    def home_network(self, rng: random.Random, country: str) -> _Network:
        options = self.residential_by_country.get(country) or self.mobile_by_country[country]
        return rng.choice(options)

    def mobile_network(self, rng: random.Random, country: str) -> _Network | None:
        options = self.mobile_by_country.get(country)
        return rng.choice(options) if options else None

    @staticmethod
    def ipv4(rng: random.Random, net: _Network) -> _Endpoint:
        a, b = rng.choice(net.v4_16s)
        return _Endpoint(
            f"{a}.{b}.{rng.randrange(256)}.{rng.randrange(1, 255)}", net.asn, net.country
        )

    @staticmethod
    def ipv6(rng: random.Random, net: _Network) -> _Endpoint:
        h1, h2 = net.v6_32
        tail = ":".join(f"{rng.getrandbits(16):x}" for _ in range(5))
        return _Endpoint(f"{h1:x}:{h2:x}:{rng.getrandbits(16):x}:{tail}", net.asn, net.country)

    def in_24(self, prefix: tuple[int, int, int], host: int, asn: int) -> _Endpoint:
        a, b, c = prefix
        net = self.by_asn[asn]
        return _Endpoint(f"{a}.{b}.{c}.{host}", asn, net.country)


# --- models and clients --------------------------------------------------------------

_MODEL_CHAT = "atlas-3"
_MODEL_MINI = "atlas-3-mini"
_MODEL_REASONING = "atlas-3-reasoning"
_MODEL_NEW = "atlas-4"  # released mid-run; distillers move to it fast
_NEW_MODEL_RELEASE_FRACTION = 0.4

_BROWSER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{m} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:12{m}.0) Gecko/20100101 Firefox/12{m}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
)
_SDK_UAS = _phrases(
    "openai-python/1.{m}.0|anthropic-sdk-python/0.{m}.0|OpenAI/JS 4.{m}.0|python-httpx/0.2{m}.0|"
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)|curl/8.{m}.0|PostmanRuntime/7.{m}.1|"
    "langchain-core/0.{m}.3|Go-http-client/2.0|okhttp/4.{m}.0|aiohttp/3.{m}.5"
)


def _user_agent(rng: random.Random, browser_share: float) -> str:
    template = rng.choice(_BROWSER_UAS) if rng.random() < browser_share else rng.choice(_SDK_UAS)
    return template.format(v=rng.randrange(118, 131), m=rng.randrange(1, 9))


def _random_hex_id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}{rng.getrandbits(64):016x}"


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


# --- problem generators (what distillers fill their templates with) -------------------


def _math_problem(rng: random.Random) -> str:
    r = rng.randrange
    k = r(10)
    if k == 0:
        vehicle = rng.choice(("train", "car", "cyclist", "boat"))
        return (
            f"A {vehicle} travels {r(20, 900)} km in {r(2, 12)} hours. "
            "What is its average speed in km/h?"
        )
    if k == 1:
        return f"Solve for x: {r(2, 40)}x + {r(1, 99)} = {r(100, 999)}."
    if k == 2:
        return f"What is the sum of all integers from {r(1, 50)} to {r(100, 1000)}?"
    if k == 3:
        return (
            f"A rectangle has a perimeter of {r(20, 200)} cm and a length of {r(5, 40)} cm. "
            "What is its area?"
        )
    if k == 4:
        return (
            f"If {r(2, 12)} workers can build a wall in {r(3, 30)} days, "
            f"how many days would {r(2, 20)} workers need?"
        )
    if k == 5:
        return f"Find the remainder when {r(2, 20)}^{r(10, 200)} is divided by {r(3, 50)}."
    if k == 6:
        return (
            f"How many ways can {r(4, 12)} people be seated around a round table "
            "if two of them refuse to sit together?"
        )
    if k == 7:
        return (
            f"A bag contains {r(2, 15)} red and {r(2, 15)} blue balls. Two are drawn without "
            "replacement. What is the probability both are red?"
        )
    if k == 8:
        return (
            f"Compute the derivative of f(x) = {r(2, 9)}x^{r(3, 7)} + {r(2, 9)}x^2 - {r(1, 20)}x "
            f"+ {r(1, 50)} and evaluate it at x = {r(1, 6)}."
        )
    return (
        f"The sum of two numbers is {r(20, 500)} and their difference is {r(2, 19)}. "
        "Find the two numbers."
    )


def _math_problem_zh(rng: random.Random) -> str:
    r = rng.randrange
    k = r(5)
    if k == 0:
        return f"一辆汽车{r(2, 12)}小时行驶了{r(100, 900)}公里，它的平均速度是多少？"
    if k == 1:
        return f"解方程：{r(2, 40)}x + {r(1, 99)} = {r(100, 999)}。"
    if k == 2:
        return f"一个长方形的周长是{r(20, 200)}厘米，长是{r(5, 40)}厘米，求它的面积。"
    if k == 3:
        return (
            f"袋子里有{r(2, 15)}个红球和{r(2, 15)}个蓝球，"
            "不放回地取出两个，两个都是红球的概率是多少？"
        )
    return f"计算从{r(1, 50)}到{r(100, 1000)}所有整数的和。"


_CODE_TASKS = _phrases(
    "returns the longest palindromic substring of a string|"
    "merges two sorted lists into one sorted list|"
    "checks whether a binary tree is height-balanced|finds the k most frequent words in a text|"
    "implements an LRU cache with get and put in O(1)|detects a cycle in a directed graph|"
    "computes the edit distance between two strings|parses a CSV line with quoted fields|"
    "returns all permutations of a list without duplicates|"
    "finds the median of two sorted arrays in logarithmic time|"
    "serializes and deserializes a binary tree|finds the shortest path in a weighted grid|"
    "validates a Sudoku board|counts the islands in a 2D grid of zeros and ones|"
    "evaluates an arithmetic expression with parentheses|"
    "finds the longest increasing subsequence|"
    "implements a trie with insert, search and prefix search|"
    "schedules tasks with dependencies in topological order|computes the maximum subarray sum|"
    "rotates an n by n matrix by 90 degrees in place"
)
_CODE_TASKS_ZH = _phrases(
    "返回字符串中最长的回文子串|合并两个有序链表|判断二叉树是否平衡|计算两个字符串的编辑距离|"
    "实现一个LRU缓存|找出数组中和最大的连续子数组|检测有向图中是否有环|实现一个前缀树"
)
_FUNCTION_NAMES = ("solve", "process", "compute", "find_answer", "helper", "run", "main_logic", "f")


def _code_problem(rng: random.Random) -> str:
    lang = rng.choice(("Python", "Python", "C++", "Java", "Go", "Rust"))
    if rng.random() < 0.5:
        name = rng.choice(_FUNCTION_NAMES)
        return f"Write a {lang} function `{name}` that {rng.choice(_CODE_TASKS)}."
    return (
        f"Implement an algorithm in {lang} that {rng.choice(_CODE_TASKS)}, "
        "then analyse its time and space complexity."
    )


def _code_problem_zh(rng: random.Random) -> str:
    name = rng.choice(_FUNCTION_NAMES)
    return f"用Python写一个函数`{name}`，{rng.choice(_CODE_TASKS_ZH)}，并分析时间复杂度。"


def _logic_problem(rng: random.Random) -> str:
    a, b, c, d = rng.sample(_PEOPLE, 4)
    k = rng.randrange(3)
    if k == 0:
        return (
            f"On an island, knights always tell the truth and knaves always lie. {a} says: "
            f"'{b} is a knave.' {b} says: '{a} and {c} are of the same kind.' {c} says nothing. "
            "Who is a knight and who is a knave?"
        )
    if k == 1:
        return (
            f"{a} is older than {b}. {c} is younger than {b} but older than {d}. "
            "Who is the second oldest?"
        )
    x, y, z = rng.sample(_NOUNS, 3)
    return f"If all {x}s are {y}s and some {y}s are {z}s, does it follow that some {x}s are {z}s?"


def _tool_problem(rng: random.Random) -> str:
    return (
        "You can call these tools: search(query), calculator(expression), get_weather(city), "
        f"convert_currency(amount, from, to). A user asks: 'Is it warmer in {rng.choice(_CITIES)} "
        f"than in {rng.choice(_CITIES)} today, and what is {rng.randrange(10, 999)} USD in EUR?' "
        "Decide which tools to call, in what order, and what to do with each result."
    )


def _problem(rng: random.Random, chinese: bool) -> str:
    k = rng.random()
    if chinese:
        return _math_problem_zh(rng) if k < 0.65 else _code_problem_zh(rng)
    if k < 0.45:
        return _math_problem(rng)
    if k < 0.75:
        return _code_problem(rng)
    if k < 0.92:
        return _logic_problem(rng)
    return _tool_problem(rng)


# --- attack prompt templates ------------------------------------------------------------

_HYDRA_SYSTEMS_EN = (
    "You are a meticulous reasoning assistant. Always output your full reasoning inside "
    "<thinking> tags before the final answer. Never skip steps.",
    "Think through every problem step by step. Show all of your intermediate reasoning, "
    "then give the answer after 'Final answer:'.",
)
_HYDRA_SYSTEMS_ZH = (
    "你是一个严谨的推理助手。请始终在<thinking>标签中输出完整的思考过程，然后再给出最终答案。",
    "对于每个问题，请逐步思考，展示所有的推理步骤，最后给出答案。",
)
_HYDRA_SUFFIXES_EN = (
    "\n\nThink step by step and show all of your reasoning.",
    "\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "\n\nExplain your chain of thought in detail before answering.",
    "",
)
_HYDRA_SUFFIXES_ZH = (
    "\n\n请一步一步地思考，并给出详细的推理过程。",
    "\n\n请展示完整的推理过程。",
    "",
)

_SCRAPER_TEMPLATE = (
    "Problem: {problem}\n\nInstructions: Work through this problem step by step. Show every "
    "intermediate step and your complete chain of thought, then state the final answer on its "
    "own line."
)

# The slow extractor's one template, reworded per request with synonyms.
_SLOW_TEMPLATES = (
    "{Please|Kindly|Could you} {solve|work out|answer|tackle} the following "
    "{problem|question|task}, {showing|displaying|presenting|laying out} "
    "{all|every bit of|the entirety of} your {reasoning|thinking|thought process} "
    "{before|prior to|ahead of} {giving|stating|writing} the final answer. "
    "{Problem|Question|Task}: {problem}",
    "{Here is|Below is|Consider} a {completed|finished|final} {response|answer|reply} to the "
    "{problem|question|task} {problem}. {Articulate|Explain|Describe|Spell out} the "
    "{internal|underlying|hidden} reasoning {behind|that led to|which produced} it, "
    "{step by step|one step at a time|in detail}.",
)

_HARVEST_TEMPLATES = (
    "Generate {n} high-quality instruction/response pairs for training data about {topic}. "
    'Return them as JSON lines with the fields "instruction" and "response".',
    "Create {n} diverse question-answer pairs on {topic} suitable as fine-tuning data for a "
    "language model.",
    "Write {n} examples of user requests about {topic} together with ideal assistant "
    "responses, for a supervised fine-tuning dataset.",
    "Produce a high-quality, detailed answer to the following question; it will be used as "
    "training data. Question: What are the most important ideas in {topic}?",
    "请生成{n}条关于{topic_zh}的高质量指令-回答对，用作模型训练数据，以JSON格式输出。",
)


def _synonym_swap(template: str, rng: random.Random, problem: str) -> str:
    parts: list[str] = []
    rest = template
    while True:
        open_at = rest.find("{")
        if open_at < 0:
            parts.append(rest)
            break
        close_at = rest.index("}", open_at)
        parts.append(rest[:open_at])
        body = rest[open_at + 1 : close_at]
        parts.append(problem if body == "problem" else rng.choice(body.split("|")))
        rest = rest[close_at + 1 :]
    return "".join(parts)


# --- token counts -----------------------------------------------------------------------


def _approx_tokens(text: str | None) -> int:
    if not text:
        return 0
    chars = len(text)
    # UTF-8 CJK characters take 3 bytes; each is roughly one token.
    wide = (len(text.encode("utf-8", "surrogatepass")) - chars) // 2
    return max(1, (chars - wide) // 4 + wide)


def _lognormal_int(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    return min(cap, max(1, int(rng.lognormvariate(math.log(median), sigma))))


# --- actors -----------------------------------------------------------------------------


@dataclass
class _Actor:
    """One API key and the behaviour behind it (never serialised into events)."""

    api_key: str
    account_id: str
    population: str
    attack: bool
    tier: str
    seed: int
    campaign: str | None = None
    country: str = "US"
    language: str = "en"
    home: _Endpoint | None = None
    user_agent: str = ""
    endpoint: str = "/v1/chat/completions"
    model: str = _MODEL_CHAT
    cot_habit: float = 0.0
    rate: float = 0.0  # requests per second, for machine-paced actors
    job: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _World:
    config: SimulationConfig
    networks: _Networks
    proxy_pool: tuple[_Endpoint, ...]
    release_ts: float

    @property
    def end_ts(self) -> float:
        return self.config.start_ts + self.config.duration_s


def _build_world(config: SimulationConfig) -> _World:
    rng = random.Random(f"{config.seed}:networks")
    networks = _Networks(rng)
    pool: list[_Endpoint] = []
    for _ in range(1500):
        roll = rng.random()
        if roll < 0.88:
            net = rng.choice(networks.residential)
            pool.append(networks.ipv4(rng, net) if rng.random() < 0.85 else networks.ipv6(rng, net))
        else:
            pool.append(networks.ipv4(rng, rng.choice(networks.clouds)))
    # A handful of the proxies exit through the campus NAT.
    pool.extend(networks.in_24(networks.campus_24, host, 64500) for host in (7, 8, 9, 10, 11))
    return _World(
        config=config,
        networks=networks,
        proxy_pool=tuple(pool),
        release_ts=config.start_ts + _NEW_MODEL_RELEASE_FRACTION * config.duration_s,
    )


_COUNTRIES = tuple(c for c, _ in _USER_COUNTRIES)
_COUNTRY_CUM_WEIGHTS = tuple(accumulate(w for _, w in _USER_COUNTRIES))


def _weighted_country(rng: random.Random) -> str:
    return rng.choices(_COUNTRIES, cum_weights=_COUNTRY_CUM_WEIGHTS)[0]


def _new_actor(
    rng: random.Random, population: str, attack: bool, tier: str, account_id: str | None = None
) -> _Actor:
    return _Actor(
        api_key=_random_hex_id(rng, "k_"),
        account_id=account_id or _random_hex_id(rng, "a_"),
        population=population,
        attack=attack,
        tier=tier,
        seed=rng.getrandbits(64),
    )


def _human_actor(rng: random.Random, world: _World, population: str, power: bool) -> _Actor:
    actor = _new_actor(
        rng,
        population,
        False,
        rng.choice(("pro", "pro", "team")) if power else rng.choice(("free", "free", "pro")),
    )
    actor.country = _weighted_country(rng)
    local = _COUNTRY_LANGUAGE.get(actor.country)
    actor.language = local if local and rng.random() < 0.7 else "en"
    net = world.networks.home_network(rng, actor.country)
    actor.home = (
        world.networks.ipv6(rng, net) if rng.random() < 0.25 else world.networks.ipv4(rng, net)
    )
    actor.user_agent = _user_agent(rng, 0.3 if power else 0.6)
    actor.endpoint = "/v1/responses" if rng.random() < 0.2 else "/v1/chat/completions"
    actor.model = rng.choices(
        (_MODEL_CHAT, _MODEL_MINI, _MODEL_REASONING), (0.6, 0.3, 0.35 if power else 0.05)
    )[0]
    if power:
        actor.cot_habit = 0.4 if rng.random() < 0.3 else 0.0
    return actor


def _make_actors(population: str, world: _World) -> list[_Actor]:
    config = world.config
    rng = random.Random(f"{config.seed}:{population}")
    n = max(1, round(_BASE_KEYS[population] * config.scale))
    nets = world.networks
    actors: list[_Actor] = []
    if population in (CASUAL, POWER_USER):
        actors = [_human_actor(rng, world, population, population == POWER_USER) for _ in range(n)]
    elif population == ENTERPRISE_BATCH:
        account = _random_hex_id(rng, "a_")
        gateways = [nets.ipv4(rng, nets.by_asn[_CLOUD_FOR_BATCH]) for _ in range(3)]
        for i in range(n):
            a = _new_actor(rng, population, False, "enterprise", account)
            a.home = gateways[i % len(gateways)]
            a.user_agent = rng.choice(("openai-python/1.35.3", "Go-http-client/2.0"))
            a.rate = rng.uniform(4.0, 8.0)
            a.job = i % len(_BATCH_JOBS)
            a.model = rng.choice((_MODEL_MINI, _MODEL_CHAT))
            actors.append(a)
    elif population == EVAL_HARNESS:
        account = _random_hex_id(rng, "a_")
        runner = nets.ipv4(rng, nets.by_asn[15169])
        for i in range(n):
            a = _new_actor(rng, population, False, "enterprise", account)
            a.home = runner
            a.user_agent = "python-httpx/0.27.0"
            a.job = i % 3
            a.rate = rng.uniform(10.0, 25.0)
            a.model = rng.choice((_MODEL_CHAT, _MODEL_REASONING, _MODEL_MINI))
            actors.append(a)
    elif population == NAT_NEIGHBOUR:
        for i in range(n):
            on_campus = i % 2 == 0
            a = _human_actor(rng, world, population, power=on_campus)
            if on_campus:
                # Students behind the campus NAT: a couple of public IPs for everyone.
                a.home = nets.in_24(nets.campus_24, rng.choice((7, 8, 9)), 64500)
                a.country = "US"
                a.language = "en" if rng.random() < 0.8 else "zh"
                a.cot_habit = 0.4 if rng.random() < 0.5 else 0.0
            else:
                # Small apps rented on the same cloud /24 as the bulk scraper.
                a.home = nets.in_24(nets.scraper_24, rng.randrange(20, 250), _CLOUD_FOR_SCRAPER)
                a.user_agent = _user_agent(rng, 0.0)
                a.language = "en"
            actors.append(a)
    elif population == BULK_SCRAPER:
        account = _random_hex_id(rng, "a_")
        for i in range(n):
            a = _new_actor(rng, population, True, "pro", account)
            a.campaign = "bulk-1"
            a.extra["ips"] = [
                nets.in_24(nets.scraper_24, 10 + i * 3 + j, _CLOUD_FOR_SCRAPER) for j in range(3)
            ]
            a.user_agent = "python-requests/2.31.0"
            a.rate = rng.uniform(3.5, 4.5)
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == HYDRA:
        accounts = [_random_hex_id(rng, "a_") for _ in range(max(1, round(n * 0.6)))]
        for i in range(n):
            account = accounts[i] if i < len(accounts) else rng.choice(accounts)
            a = _new_actor(rng, population, True, rng.choice(("free", "free", "pro")), account)
            a.campaign = "hydra-1"
            a.rate = 1.0 / rng.uniform(20.0, 60.0)
            a.endpoint = "/v1/chat/completions"
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == SLOW_EXTRACTOR:
        for _ in range(n):
            a = _new_actor(rng, population, True, "pro")
            a.campaign = "slow-1"
            a.country = _weighted_country(rng)
            a.home = nets.ipv4(rng, nets.home_network(rng, a.country))
            a.user_agent = _user_agent(rng, 0.5)
            a.rate = 1.0 / rng.uniform(60.0, 180.0)
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == HARVESTER:
        accounts = [_random_hex_id(rng, "a_") for _ in range(max(1, n // 2))]
        for i in range(n):
            a = _new_actor(rng, population, True, "pro", accounts[i % len(accounts)])
            a.campaign = "harvest-1"
            cloud = nets.by_asn[_CLOUDS_FOR_HARVESTER[i % len(_CLOUDS_FOR_HARVESTER)]]
            a.extra["ips"] = [nets.ipv4(rng, cloud) for _ in range(2)]
            a.user_agent = rng.choice(("python-httpx/0.27.0", "aiohttp/3.9.5"))
            a.rate = 1.0 / rng.uniform(3.0, 5.0)
            a.model = _MODEL_CHAT
            actors.append(a)
    return actors


# --- arrival processes ------------------------------------------------------------------


def _diurnal(ts: float, country: str) -> float:
    """Relative activity by local hour: low at night, highest in the evening."""
    hour = ((ts / 3600.0) + _UTC_OFFSET_H.get(country, 0)) % 24.0
    if hour < 7.0:
        return 0.15
    return 0.15 + 0.85 * math.sin(math.pi * (hour - 7.0) / 17.0) ** 2


def _human_times(rng: random.Random, world: _World, country: str, power: bool) -> Iterator[float]:
    """Sessions of a few requests with heavy-tailed think time, long gaps between."""
    start, end = world.config.start_ts, world.end_ts
    per_session = 14.0 if power else 7.0
    think_median = 18.0 if power else 30.0
    between_mean = 360.0 if power else 540.0
    # Start mid-session with the stationary probability of being in one.
    session_len = per_session * think_median * 1.4
    if rng.random() < session_len / (session_len + between_mean):
        t = start + rng.uniform(0.0, 2.0 * think_median)
    else:
        t = start + rng.expovariate(_diurnal(start, country) / between_mean)
    while t < end:
        for _ in range(1 + int(rng.expovariate(1.0 / per_session))):
            if t >= end:
                return
            yield t
            t += max(2.0, rng.lognormvariate(math.log(think_median), 0.9))
        t += rng.expovariate(_diurnal(t, country) / between_mean)


def _poisson_times(rng: random.Random, start: float, end: float, rate: float) -> Iterator[float]:
    t = start + rng.expovariate(rate)
    while t < end:
        yield t
        t += rng.expovariate(rate)


def _regular_times(
    rng: random.Random, start: float, end: float, rate: float, jitter: float
) -> Iterator[float]:
    """Machine pacing: a fixed period with small relative jitter (low CV)."""
    period = 1.0 / rate
    t = start + rng.uniform(0.0, period)
    while t < end:
        yield t
        t += period * max(0.05, 1.0 + rng.gauss(0.0, jitter))


def _burst_times(rng: random.Random, start: float, end: float, rate: float) -> Iterator[float]:
    """Benchmark runs: hundreds of requests back to back, then idle minutes."""
    t = start + rng.expovariate(1.0 / 200.0)
    while t < end:
        for _ in range(rng.randrange(300, 1500)):
            if t >= end:
                return
            yield t
            t += rng.expovariate(rate)
        t += rng.expovariate(1.0 / 300.0)


# --- event construction -----------------------------------------------------------------


def _event(
    rng: random.Random,
    actor: _Actor,
    ts: float,
    where: _Endpoint,
    user_agent: str,
    model: str,
    prompt: str,
    system: str | None,
    output_tokens: int,
    reasoning_tokens: int,
) -> dict[str, Any]:
    roll = rng.random()
    status = 200 if roll < 0.975 else 429 if roll < 0.985 else 400 if roll < 0.995 else 503
    if status != 200:
        output_tokens = reasoning_tokens = 0
    event: dict[str, Any] = {
        "event_id": f"{rng.getrandbits(128):032x}",
        "ts": round(ts, 3),
        "api_key": actor.api_key,
        "account_id": actor.account_id,
        "ip": where.ip,
        "asn": where.asn,
        "country": where.country,
        "user_agent": user_agent,
        "endpoint": actor.endpoint,
        "model": model,
        "tier": actor.tier,
        "prompt": prompt,
    }
    if system:
        event["system"] = system
    event["input_tokens"] = _approx_tokens(prompt) + _approx_tokens(system) + 8
    event["output_tokens"] = output_tokens
    event["reasoning_tokens"] = reasoning_tokens
    event["status"] = status
    return event


def _reasoning_for(rng: random.Random, model: str, median: float) -> int:
    if model in (_MODEL_REASONING, _MODEL_NEW):
        return _lognormal_int(rng, median, 0.7, 32_000)
    return 0


def _run_human(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    power = actor.population == POWER_USER or (
        actor.population == NAT_NEIGHBOUR and actor.cot_habit > 0
    )
    nets = world.networks
    mobile = nets.mobile_network(rng, actor.country) if actor.population != NAT_NEIGHBOUR else None
    adopts_new_model = rng.random() < 0.1
    assert actor.home is not None
    for ts in _human_times(rng, world, actor.country, power):
        where = actor.home
        if mobile is not None and rng.random() < 0.1:
            where = nets.ipv4(rng, mobile)
        model = actor.model
        if adopts_new_model and ts >= world.release_ts:
            model = _MODEL_NEW
        prompt = _human_prompt(rng, actor.language, power, actor.cot_habit)
        asks_reasoning = actor.cot_habit > 0 and prompt.endswith(_ALL_COT_SUFFIXES)
        output = _lognormal_int(rng, 450 if power else 220, 0.8, 8000)
        reasoning = _reasoning_for(rng, model, 900 if asks_reasoning else 350)
        yield _event(
            rng, actor, ts, where, actor.user_agent, model, prompt, None, output, reasoning
        )


# Enterprise batch jobs: a fixed instruction around a varied payload, short outputs.
_BATCH_JOBS: tuple[tuple[str, str, int], ...] = (
    (
        "You label customer support tickets.",
        "Classify the sentiment of this ticket as positive, negative or neutral. "
        "Reply with one word.\n\nTicket #{id}: {payload}",
        3,
    ),
    (
        "You extract structured data.",
        "Extract the vendor, amount and due date from this invoice as JSON.\n\n"
        "Invoice {id}: {payload}",
        60,
    ),
    (
        "You write product copy for an online shop.",
        "Write a two-sentence product description for a {adj} {noun} "
        "for {city} customers. Notes: {payload}",
        90,
    ),
    (
        "You summarise internal documents.",
        "Summarise the following meeting notes in three bullet points.\n\n{payload}",
        120,
    ),
)


def _run_enterprise(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    system, template, out_median = _BATCH_JOBS[actor.job]
    assert actor.home is not None
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        c = rng.choice
        prompt = template.format(
            id=rng.randrange(10_000, 999_999),
            payload=_payload(rng, rng.randrange(2, 6)),
            adj=c(_ADJECTIVES),
            noun=c(_NOUNS),
            city=c(_CITIES),
        )
        output = _lognormal_int(rng, out_median, 0.5, 2000)
        yield _event(
            rng, actor, ts, actor.home, actor.user_agent, actor.model, prompt, system, output, 0
        )


_EVAL_SUBJECTS = _phrases(
    "biology|law|economics|chemistry|history|computer science|philosophy|medicine"
)


def _eval_prompt(rng: random.Random, kind: int) -> tuple[str, int]:
    c = rng.choice
    if kind == 0:
        options = rng.sample(_NOUNS, 4)
        return (
            f"The following is a multiple choice question about {c(_EVAL_SUBJECTS)}.\n\n"
            f"Question: Which of the following best describes the role of the {c(_NOUNS)} in a "
            f"{c(_ADJECTIVES)} "
            f"{c(_NOUNS)}?\nA. {options[0]}\nB. {options[1]}\nC. {options[2]}\nD. {options[3]}\n"
            "Answer with only the letter.",
            1,
        )
    if kind == 1:
        a, b = rng.randrange(10, 9999), rng.randrange(10, 9999)
        return f"Q: What is {a} + {b}?\nA:", 3
    return (
        f"Statement: {_sentence(rng)}\nIs the statement above grammatical? Answer True or False.",
        1,
    )


def _run_eval(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    assert actor.home is not None
    for ts in _burst_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        prompt, answer_tokens = _eval_prompt(rng, actor.job)
        reasoning = _lognormal_int(rng, 20, 0.5, 200) if actor.model == _MODEL_REASONING else 0
        yield _event(
            rng,
            actor,
            ts,
            actor.home,
            actor.user_agent,
            actor.model,
            prompt,
            None,
            answer_tokens,
            reasoning,
        )


def _attack_model(rng: random.Random, ts: float, switch_ts: float) -> str:
    return _MODEL_NEW if ts >= switch_ts and rng.random() < 0.9 else _MODEL_REASONING


def _run_bulk_scraper(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    ips: list[_Endpoint] = actor.extra["ips"]
    switch_ts = world.release_ts + rng.expovariate(1.0 / 120.0)
    for ts in _regular_times(rng, world.config.start_ts, world.end_ts, actor.rate, 0.25):
        prompt = _SCRAPER_TEMPLATE.format(problem=_problem(rng, chinese=False))
        model = _attack_model(rng, ts, switch_ts)
        output = _lognormal_int(rng, 700, 0.4, 4000)
        reasoning = _lognormal_int(rng, 4000, 0.5, 32_000)
        yield _event(
            rng,
            actor,
            ts,
            rng.choice(ips),
            actor.user_agent,
            model,
            prompt,
            None,
            output,
            reasoning,
        )


def _run_hydra(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    pool = world.proxy_pool
    switch_ts = world.release_ts + rng.expovariate(1.0 / 180.0)
    for ts in _regular_times(rng, world.config.start_ts, world.end_ts, actor.rate, 0.08):
        where = rng.choice(pool)
        user_agent = _user_agent(rng, 0.2)
        model = _attack_model(rng, ts, switch_ts)
        if rng.random() < 0.2:
            # Ordinary-looking requests mixed in to dilute the key's profile.
            prompt = _human_prompt(rng, "en", power=False, cot_habit=0.0)
            output = _lognormal_int(rng, 220, 0.8, 8000)
            reasoning = _reasoning_for(rng, model, 300)
            yield _event(rng, actor, ts, where, user_agent, model, prompt, None, output, reasoning)
            continue
        chinese = rng.random() < 0.3
        problem = _problem(rng, chinese)
        suffixes = _HYDRA_SUFFIXES_ZH if chinese else _HYDRA_SUFFIXES_EN
        prompt = problem + rng.choice(suffixes)
        system: str | None = None
        if rng.random() < 0.7:
            system = rng.choice(_HYDRA_SYSTEMS_ZH if chinese else _HYDRA_SYSTEMS_EN)
        output = _lognormal_int(rng, 600, 0.5, 4000)
        reasoning = _lognormal_int(rng, 3000, 0.6, 32_000)
        yield _event(rng, actor, ts, where, user_agent, model, prompt, system, output, reasoning)


def _run_slow_extractor(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    template = _SLOW_TEMPLATES[actor.seed % len(_SLOW_TEMPLATES)]
    assert actor.home is not None
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        prompt = _synonym_swap(template, rng, _problem(rng, chinese=False))
        output = _lognormal_int(rng, 600, 0.5, 4000)
        reasoning = _lognormal_int(rng, 3500, 0.5, 32_000)
        yield _event(
            rng,
            actor,
            ts,
            actor.home,
            actor.user_agent,
            actor.model,
            prompt,
            None,
            output,
            reasoning,
        )


def _run_harvester(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    ips: list[_Endpoint] = actor.extra["ips"]
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        prompt = _fill(rng.choice(_HARVEST_TEMPLATES), rng)
        output = _lognormal_int(rng, 2500, 0.35, 8000)
        reasoning = _lognormal_int(rng, 30, 0.8, 300) if rng.random() < 0.3 else 0
        yield _event(
            rng,
            actor,
            ts,
            rng.choice(ips),
            actor.user_agent,
            actor.model,
            prompt,
            None,
            output,
            reasoning,
        )


_RUNNERS: dict[str, Callable[[_Actor, _World], Iterator[dict[str, Any]]]] = {
    CASUAL: _run_human,
    POWER_USER: _run_human,
    NAT_NEIGHBOUR: _run_human,
    ENTERPRISE_BATCH: _run_enterprise,
    EVAL_HARNESS: _run_eval,
    BULK_SCRAPER: _run_bulk_scraper,
    HYDRA: _run_hydra,
    SLOW_EXTRACTOR: _run_slow_extractor,
    HARVESTER: _run_harvester,
}


# --- public API ---------------------------------------------------------------------------


def _actors(config: SimulationConfig) -> tuple[_World, list[_Actor]]:
    world = _build_world(config)
    actors: list[_Actor] = []
    for population in ALL_POPULATIONS:  # fixed order, whatever order the config lists
        if population in config.populations:
            actors.extend(_make_actors(population, world))
    return world, actors


def _label(actor: _Actor) -> dict[str, Any]:
    return {
        "population": actor.population,
        "attack": actor.attack,
        "account_id": actor.account_id,
        "tier": actor.tier,
        "campaign": actor.campaign,
    }


def labels_for(config: SimulationConfig) -> dict[str, dict[str, Any]]:
    """Ground truth per API key, without generating any events."""
    _, actors = _actors(config)
    return {a.api_key: _label(a) for a in actors}


_BY_TS = itemgetter("ts")


def _merged(world: _World, actors: list[_Actor]) -> Iterator[dict[str, Any]]:
    streams: list[Iterable[dict[str, Any]]] = [_RUNNERS[a.population](a, world) for a in actors]
    return heapq.merge(*streams, key=_BY_TS)


def iter_events(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """Events in timestamp order, produced lazily (one pending event per key)."""
    return _merged(*_actors(config))


def generate(config: SimulationConfig) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Events sorted by ts, and labels: api_key -> population, attack flag, account, campaign.

    Labels also carry ``events``, the number of events of that key in this run.
    """
    world, actors = _actors(config)
    events = list(_merged(world, actors))
    labels = {a.api_key: _label(a) for a in actors}
    counts = Counter(map(_BY_KEY, events))
    for key, label in labels.items():
        label["events"] = counts.get(key, 0)
    return events, labels


_BY_KEY = itemgetter("api_key")


def write(
    events: Iterable[dict[str, Any]],
    labels: dict[str, dict[str, Any]],
    events_path: str | Path,
    labels_path: str | Path,
) -> None:
    """Events as JSON lines, labels as one JSON object (both via orjson)."""
    with open(events_path, "wb") as out:
        for event in events:
            out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    Path(labels_path).write_bytes(
        orjson.dumps(labels, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
