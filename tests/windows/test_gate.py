"""The repeat gate: a fingerprint earns tracking from its second sighting, for two epochs."""

from __future__ import annotations

import random

from enforcer.engine.gate import RepeatGate

EPOCH = 600.0


def test_a_fingerprint_is_tracked_from_its_second_sighting() -> None:
    gate = RepeatGate(epoch_s=EPOCH)
    assert not gate.seen_before("a1b2c3d4e5f60718", 10.0)
    assert gate.seen_before("a1b2c3d4e5f60718", 11.0)
    # The same skeleton as a system prompt is another fingerprint.
    assert not gate.seen_before("sa1b2c3d4e5f60718", 12.0)


def test_a_sighting_is_remembered_through_the_next_epoch_and_then_forgotten() -> None:
    gate = RepeatGate(epoch_s=EPOCH)
    gate.seen_before("00000000000000ff", 10.0)
    assert gate.seen_before("00000000000000ff", EPOCH + 10.0)  # previous epoch
    gate = RepeatGate(epoch_s=EPOCH)
    gate.seen_before("00000000000000ff", 10.0)
    gate.seen_before("1111111111111111", EPOCH + 10.0)
    assert not gate.seen_before("00000000000000ff", 2 * EPOCH + 10.0)  # two epochs on
    gate = RepeatGate(epoch_s=EPOCH)
    gate.seen_before("00000000000000ff", 10.0)
    assert not gate.seen_before("00000000000000ff", 3 * EPOCH + 10.0)  # a gap of epochs


def test_stamps_that_wrap_around_do_not_pass_for_fresh_ones() -> None:
    # Epoch stamps cycle through 255 values: epoch 255 gets epoch 0's stamp again.
    gate = RepeatGate(cells=1 << 20, epoch_s=1.0)
    gate.seen_before("00000000000000ff", 0.5)
    for epoch in range(1, 255):
        gate.seen_before(f"{epoch + 1_000_000:016x}", epoch + 0.5)
    assert not gate.seen_before("00000000000000ff", 255.5)


def test_unique_fingerprints_rarely_pass_for_repeats() -> None:
    gate = RepeatGate(epoch_s=EPOCH)
    rng = random.Random(3)
    false = sum(gate.seen_before(f"{rng.getrandbits(64):016x}", 10.0) for _ in range(200_000))
    assert false < 200  # 200k unique prompts in one epoch: well under 0.1% tracked
