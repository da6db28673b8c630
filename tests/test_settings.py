"""Settings are typed and checked at start-up; mistakes name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from enforcer.core.settings import Settings, SettingsError


def test_defaults_point_at_the_local_stack() -> None:
    s = Settings.from_env({})
    assert (s.kafka_bootstrap, s.redis_url) == ("127.0.0.1:19092", "redis://127.0.0.1:16379/0")


def test_values_are_converted_to_their_types() -> None:
    s = Settings.from_env({"ENFORCER_BATCH_MAX": "50", "ENFORCER_ALLOWED_LATENESS_S": "2.5"})
    assert (s.batch_max, s.allowed_lateness_s) == (50, 2.5)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"ENFORCER_BATCH_MAX": "many"}, "ENFORCER_BATCH_MAX"),
        ({"ENFORCER_BATCH_MAX": "0"}, "ENFORCER_BATCH_MAX"),
        ({"ENFORCER_REDIS_FAILURE": "panic"}, "ENFORCER_REDIS_FAILURE"),
        ({"ENFORCER_REDIS_URL": "http://x"}, "ENFORCER_REDIS_URL"),
        ({"ENFORCER_BATCH_MAXX": "5"}, "ENFORCER_BATCH_MAXX"),
        (
            {"ENFORCER_COMMIT_INTERVAL_S": "30"},
            "ENFORCER_COMMIT_INTERVAL_S.*ENFORCER_STALL_AFTER_S",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_to_env_round_trips() -> None:
    s = Settings.from_env({}).with_(batch_max=7, redis_prefix="x")
    assert Settings.from_env(s.to_env()) == s


def test_readme_lists_every_setting_with_its_default() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert Settings.markdown_table() in readme, "paste `enforcer settings --markdown` into README"


def test_default_policy_is_found_from_outside_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert Path(settings.policy_file).is_absolute()
    assert Path(settings.policy_file).read_text().startswith("# enforcer's default policy")


def test_default_policy_stays_relative_inside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    assert Settings.from_env({}).policy_file == "deploy/policies/default.yaml"


def test_a_named_policy_file_is_taken_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"ENFORCER_POLICY_FILE": "mine.yaml"}
    assert Settings.from_env(env).policy_file == "mine.yaml"
