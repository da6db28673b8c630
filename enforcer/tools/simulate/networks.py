"""A synthetic address plan inside real-world kinds of ASN, and the clients that use it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from enforcer.tools.simulate.text import _phrases

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
