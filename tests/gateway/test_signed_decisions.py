"""Signed decision records: with a signing key, the sidecar enforces only records the worker's
key signed; unsigned, forged and replayed ones written straight to the decisions topic are
ignored and counted, tombstones included."""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp
from aiokafka import AIOKafkaProducer

from enforcer.core.decisions import encode_record
from enforcer.core.settings import Settings
from enforcer.core.signing import (
    ISSUED_AT_HEADER,
    SIGNATURE_HEADER,
    DecisionSigner,
    SignatureCheck,
)
from enforcer.gateway.cache import DecisionCache
from enforcer.gateway.sidecar import ACTION_HEADER
from tests.gateway.conftest import SidecarFactory, check_url, make_decision
from tests.gateway.test_sidecar_metrics import scrape, value

KEY = "s" * 40
OLD_KEY = "o" * 40
ATTACKER_KEY = "a" * 40


def signer(key: str = KEY, key_id: str = "k2", **others: str) -> DecisionSigner:
    return DecisionSigner(key_id, {key_id: key, **others})


def test_a_signature_covers_key_and_value_and_names_its_key() -> None:
    record = make_decision("api_key", "k1", "block").record(signer())
    assert record.headers[0][0] == SIGNATURE_HEADER
    assert record.headers[0][1].startswith(b"k2:")
    s = signer()
    assert s.check(record.key, record.value, record.headers) is SignatureCheck.VALID
    assert s.check(b"api_key:k9", record.value, record.headers) is SignatureCheck.BAD_SIGNATURE
    tampered = record.value.replace(b'"block"', b'"allow"')
    assert s.check(record.key, tampered, record.headers) is SignatureCheck.BAD_SIGNATURE
    # Bytes cannot move between key and value without breaking the signature.
    assert s.check(record.key + b"{", record.value[1:], record.headers) is (
        SignatureCheck.BAD_SIGNATURE
    )
    assert s.check(record.key, record.value, []) is SignatureCheck.UNSIGNED
    twice = record.headers * 2
    assert s.check(record.key, record.value, twice) is SignatureCheck.BAD_SIGNATURE
    garbage = [(SIGNATURE_HEADER, b"\xff\xfe")]
    assert s.check(record.key, record.value, garbage) is SignatureCheck.BAD_SIGNATURE


def test_rotation_accepts_the_old_key_by_its_id_and_nothing_else() -> None:
    old = make_decision("api_key", "k1", "block").record(signer(OLD_KEY, "k1"))
    rotating = signer(KEY, "k2", k1=OLD_KEY)
    assert rotating.check(old.key, old.value, old.headers) is SignatureCheck.VALID
    assert signer().check(old.key, old.value, old.headers) is SignatureCheck.BAD_SIGNATURE
    forged = make_decision("api_key", "k1", "block").record(signer(ATTACKER_KEY, "k2"))
    assert rotating.check(forged.key, forged.value, forged.headers) is (
        SignatureCheck.BAD_SIGNATURE
    )


def test_settings_build_the_signer_with_its_rotation_keys() -> None:
    s = Settings(
        decision_signing_key=KEY, decision_signing_key_id="k2", decision_verify_keys=f"k1={OLD_KEY}"
    )
    s.validate()
    built = DecisionSigner.from_settings(s)
    assert built is not None
    old = make_decision("api_key", "k1", "block").record(signer(OLD_KEY, "k1"))
    assert built.check(old.key, old.value, old.headers) is SignatureCheck.VALID
    assert DecisionSigner.from_settings(Settings()) is None


def test_a_cache_without_a_key_enforces_unsigned_records_as_before() -> None:
    cache = DecisionCache("unused:9092", "unused")
    record = make_decision("api_key", "k1", "block").record(None)
    cache.apply_record(record.key, record.value, headers=record.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "block"


def test_a_replayed_older_signed_record_neither_lifts_nor_replaces_the_decision_in_force() -> None:
    """A signature proves who wrote a record, not when: an old signed allow or an old expired
    block written again to the topic must not lift the block in force."""
    cache = DecisionCache("unused:9092", "unused", signer=signer())
    now = time.time()

    old_allow = make_decision("api_key", "k1", "allow", now=now - 3600).record(signer())
    old_block = make_decision("api_key", "k1", "block", now=now - 7200).record(signer())
    block = make_decision("api_key", "k1", "block", now=now).record(signer())
    cache.apply_record(block.key, block.value, now=now, headers=block.headers)
    for replay in (old_allow, old_block):  # the old block expired long ago: it would remove
        cache.apply_record(replay.key, replay.value, now=now, headers=replay.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "block"
    assert cache.stats().replayed == 2
    lift = make_decision("api_key", "k1", "allow", now=now + 5).record(signer())
    cache.apply_record(lift.key, lift.value, now=now, headers=lift.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "allow"


def blocked_cache(now: float) -> DecisionCache:
    """A cache that checks signatures, with a signed block on api_key:k1 issued at `now`."""
    cache = DecisionCache("unused:9092", "unused", signer=signer())
    block = make_decision("api_key", "k1", "block", now=now).record(signer())
    cache.apply_record(block.key, block.value, now=now, headers=block.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "block"
    return cache


def test_a_decisions_signature_covers_exactly_its_key_and_value() -> None:
    """A decision's issue time is inside its value, so no header joins what it signs: workers
    and gateways on either side of a rolling upgrade verify each other's decisions."""
    record = make_decision("api_key", "k1", "block").record(signer())
    assert [name for name, _ in record.headers] == [SIGNATURE_HEADER]
    signed = b"enforcer.decision.v1\n%d\n%s%d\n%s" % (
        len(record.key),
        record.key,
        len(record.value),
        record.value,
    )
    digest = hmac.new(KEY.encode(), signed, hashlib.sha256).hexdigest()
    assert record.headers[0][1] == f"k2:{digest}".encode()


def test_a_replayed_old_signed_tombstone_is_refused_and_the_block_stays() -> None:
    now = time.time()
    cache = blocked_cache(now)
    old = encode_record(b"api_key:k1", None, signer(), issued_at=now - 3600)
    assert signer().check(old.key, old.value, old.headers) is SignatureCheck.VALID
    cache.apply_record(old.key, old.value, now=now, headers=old.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "block"
    assert cache.stats().replayed == 1


def test_a_fresh_signed_tombstone_lifts_the_block_and_dates_the_subject() -> None:
    now = time.time()
    cache = blocked_cache(now - 200)
    renewed = make_decision("api_key", "k1", "block", now=now - 100).record(signer())
    lift = encode_record(b"api_key:k1", None, signer(), issued_at=now)
    cache.apply_record(lift.key, lift.value, now=now, headers=lift.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "allow"
    assert cache.stats().replayed == 0
    # The tombstone's time is now the subject's newest: a block issued before it is a replay.
    cache.apply_record(renewed.key, renewed.value, now=now, headers=renewed.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "allow"
    assert cache.stats().replayed == 1


def test_a_tombstone_whose_issued_at_header_was_altered_fails_its_signature() -> None:
    now = time.time()
    cache = blocked_cache(now)
    old = encode_record(b"api_key:k1", None, signer(), issued_at=now - 3600)
    redated = [
        (name, repr(now + 5).encode() if name == ISSUED_AT_HEADER else header)
        for name, header in old.headers
    ]
    assert signer().check(old.key, None, redated) is SignatureCheck.BAD_SIGNATURE
    stripped = [h for h in old.headers if h[0] != ISSUED_AT_HEADER]
    assert signer().check(old.key, None, stripped) is SignatureCheck.BAD_SIGNATURE
    added = [*old.headers, (ISSUED_AT_HEADER, repr(now + 5).encode())]
    assert signer().check(old.key, None, added) is SignatureCheck.BAD_SIGNATURE
    for headers in (redated, stripped, added):
        cache.apply_record(old.key, None, now=now, headers=headers)
    assert cache.lookup("k1", "192.0.2.1").action == "block"
    assert cache.stats().forged == 3


def test_a_signed_tombstone_without_an_issued_at_header_is_refused_as_a_replay() -> None:
    """A tombstone signed without its issue time (by a tool that does not date them) verifies,
    but it cannot be dated: it could be a capture from any time."""
    now = time.time()
    cache = blocked_cache(now)
    undated = [(SIGNATURE_HEADER, signer().signature(b"api_key:k1", None))]
    assert signer().check(b"api_key:k1", None, undated) is SignatureCheck.VALID
    cache.apply_record(b"api_key:k1", None, now=now, headers=undated)
    assert cache.lookup("k1", "192.0.2.1").action == "block"
    assert (cache.stats().replayed, cache.stats().forged) == (1, 0)


def test_without_a_key_tombstones_go_undated_and_lift_as_before() -> None:
    record = encode_record(b"api_key:k1", None, None)
    assert record.headers == []
    cache = DecisionCache("unused:9092", "unused")
    block = make_decision("api_key", "k1", "block").record(None)
    cache.apply_record(block.key, block.value, headers=block.headers)
    cache.apply_record(record.key, record.value, headers=record.headers)
    assert cache.lookup("k1", "192.0.2.1").action == "allow"


async def test_forged_unsigned_and_replayed_records_on_the_topic_are_not_enforced_and_counted(
    kafka_settings: Settings,
    producer: AIOKafkaProducer,
    sidecar_factory: SidecarFactory,
    http: aiohttp.ClientSession,
) -> None:
    settings = kafka_settings.with_(decision_signing_key=KEY, decision_signing_key_id="k2")
    good = DecisionSigner.from_settings(settings)
    forger = signer(ATTACKER_KEY, "k2")
    topic = settings.decisions_topic

    async def write(record) -> None:  # type: ignore[no-untyped-def]
        await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)

    # The worker's records, signed: a block and a block an operator later lifts.
    await write(make_decision("api_key", "k-signed", "block").record(good))
    await write(make_decision("api_key", "k-lifted", "block").record(good))
    await write(encode_record(b"api_key:k-lifted", None, good))
    # An attacker's: unsigned blocks, blocks signed with another key, a signed record whose
    # value was changed, and unsigned and forged tombstones trying to lift the signed block.
    await write(make_decision("api_key", "k-unsigned", "block").record(None))
    await write(make_decision("ip", "192.0.2.66", "block").record(None))
    await write(make_decision("api_key", "k-forged", "block").record(forger))
    genuine = make_decision("api_key", "k-tampered", "throttle", limit_rps=5).record(good)
    await write(genuine._replace(value=genuine.value.replace(b'"throttle"', b'"block"')))
    await write(encode_record(b"api_key:k-signed", None, None))
    await write(encode_record(b"api_key:k-signed", None, forger))
    # A genuine signed tombstone from an hour ago, replayed to lift the signed block.
    await write(encode_record(b"api_key:k-signed", None, good, issued_at=time.time() - 3600))

    sidecar = await sidecar_factory(settings)
    url = check_url(sidecar)

    async def action(key: str, ip: str = "192.0.2.10") -> tuple[int, str | None]:
        async with http.get(url, headers={"X-Enforcer-Key": key, "X-Enforcer-Ip": ip}) as r:
            return r.status, r.headers.get(ACTION_HEADER)

    assert await action("k-signed") == (403, "block")
    assert await action("k-lifted") == (200, "allow")
    assert await action("k-unsigned") == (200, "allow")
    assert await action("k-other", ip="192.0.2.66") == (200, "allow")
    assert await action("k-forged") == (200, "allow")
    assert await action("k-tampered") == (200, "allow")

    stats = sidecar.cache.stats()
    assert (stats.unsigned, stats.forged, stats.replayed, stats.size) == (3, 3, 1, 1)
    samples = await scrape(http, sidecar.port)
    name = "enforcer_sidecar_unverified_decisions_total"
    assert value(samples, name, reason="unsigned") == 3
    assert value(samples, name, reason="forged") == 3
    assert value(samples, name, reason="replayed") == 1
