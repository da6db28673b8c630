"""The window update names a key's keys from its known slot group, as the single-key helpers do."""

from __future__ import annotations

from enforcer.core.decisions import Subject
from enforcer.store import keys


def test_template_keys_name_both_epochs_as_the_single_key_helpers_do() -> None:
    for subject in (Subject("api_key", "k-1"), Subject("account", "acct:with:colons")):
        group = keys.slot_group(subject)
        assert keys.template_keys("enf", group, subject, 2_983_000) == (
            keys.template_key("enf", subject, 2_983_000),
            keys.template_key("enf", subject, 2_982_999),
            keys.template_hll_key("enf", subject, 2_983_000),
            keys.template_hll_key("enf", subject, 2_982_999),
        )


def test_a_window_key_named_from_its_known_slot_group_is_the_key_named_from_the_subject() -> None:
    for subject in (Subject("api_key", "k-1"), Subject("network", "10.0.0.0/24")):
        group = keys.slot_group(subject)
        assert keys.window_key("enf", subject, group) == keys.window_key("enf", subject)
        assert f"{{{group}}}" in keys.window_key("enf", subject)
