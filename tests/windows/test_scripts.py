"""Lua scripts kept in parts: the store sends Redis one chunk, each part spliced in at its
include line, refuses a script whose parts are missing or include themselves, and names
the part file and line a script error comes from."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from enforcer.core.ports import StorageError
from enforcer.store.client import Script, Unobserved, storage_errors
from enforcer.store.codec import UPDATE_CONSTANTS


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    name = f"scripts_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, root
    sys.modules.pop(name, None)


def test_each_part_is_spliced_in_at_its_include_line(package: tuple[str, Path]) -> None:
    name, root = package
    (root / "main.lua").write_text("local a = 1\n-- include: part.lua\nreturn b\n")
    (root / "part.lua").write_text("-- include: inner.lua\nlocal b = a + c\n")
    (root / "inner.lua").write_text("local c = 2\n")
    script = Script("main.lua", package=name, constants={"K": 3})
    assert script.source == "local K = 3\nlocal a = 1\nlocal c = 2\nlocal b = a + c\nreturn b\n"


def test_a_missing_part_is_named_with_the_script_that_includes_it(
    package: tuple[str, Path],
) -> None:
    name, root = package
    (root / "main.lua").write_text("-- include: gone.lua\n")
    with pytest.raises(FileNotFoundError, match=r"gone\.lua not found .*included by main\.lua"):
        Script("main.lua", package=name)


def test_a_part_that_includes_itself_is_refused(package: tuple[str, Path]) -> None:
    name, root = package
    (root / "main.lua").write_text("-- include: loop.lua\n")
    (root / "loop.lua").write_text("-- include: main.lua\n")
    with pytest.raises(ValueError, match="main.lua includes itself"):
        Script("main.lua", package=name)


def test_the_window_script_is_sent_whole() -> None:
    source = Script("update_windows.lua", constants=UPDATE_CONSTANTS).source
    assert "-- include: " not in source
    for part in ("local function load(raw)", "local function template_shares("):
        assert source.count(part) == 1


async def test_a_failing_line_is_named_in_its_part_file(
    package: tuple[str, Path], redis_client: aioredis.Redis
) -> None:
    # Redis numbers lines in the spliced source it ran; a reader opens the part.
    name, root = package
    (root / "main.lua").write_text("local a = 1\n-- include: part.lua\nreturn a\n")
    (root / "part.lua").write_text("-- a part\nlocal b = nil + 1\n")
    script = Script("main.lua", package=name, constants={"K": 3})
    await script.load(redis_client)
    with (
        pytest.raises(StorageError, match=r"\(at part\.lua:2\)"),
        storage_errors("test", Unobserved()),
    ):
        await redis_client.evalsha(script.sha, 0)
