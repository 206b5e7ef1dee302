"""StoreArtifactService against the cases of ADK's own artifact-service tests, on every store.

The cases mirror google/adk-python tests/unittests/artifacts/test_artifact_service.py (written
here, not copied); the GCS-mock and file-layout cases have no counterpart. Added: concurrent
saves from two service objects (as two processes would be) never share a version.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from google.adk.artifacts.base_artifact_service import ArtifactVersion
from google.adk.errors.input_validation_error import InputValidationError
from google.genai import types
from test_adk_support import artifact_store, artifact_store_url  # noqa: F401  (fixtures)

from agent_session_store import open_artifact_store
from agent_session_store.integrations.adk import StoreArtifactService

pytestmark = pytest.mark.timeout(120)
SCOPE: dict[str, Any] = {"app_name": "app0", "user_id": "user0", "session_id": "123"}


@pytest.fixture
def service(artifact_store: Any) -> StoreArtifactService:  # noqa: F811
    return StoreArtifactService(artifact_store)


async def test_load_empty(service: StoreArtifactService) -> None:
    assert not await service.load_artifact(
        app_name="test_app", user_id="test_user", session_id="session_id", filename="filename"
    )


async def test_save_load_delete(service: StoreArtifactService) -> None:
    artifact = types.Part.from_bytes(data=b"test_data", mime_type="text/plain")
    assert await service.save_artifact(**SCOPE, filename="file456", artifact=artifact) == 0
    assert await service.load_artifact(**SCOPE, filename="file456") == artifact
    assert not await service.load_artifact(**SCOPE, filename="file456", version=3)
    await service.delete_artifact(**SCOPE, filename="file456")
    assert not await service.load_artifact(**SCOPE, filename="file456")


async def test_list_keys(service: StoreArtifactService) -> None:
    artifact = types.Part.from_bytes(data=b"test_data", mime_type="text/plain")
    names = [f"filename{i}" for i in range(5)]
    for name in names:
        await service.save_artifact(**SCOPE, filename=name, artifact=artifact)
    assert await service.list_artifact_keys(**SCOPE) == names


async def test_list_versions(service: StoreArtifactService) -> None:
    versions = [
        types.Part.from_bytes(data=i.to_bytes(2, byteorder="big"), mime_type="text/plain")
        for i in range(3)
    ]
    versions.append(types.Part.from_text(text="hello"))
    for part in versions:
        await service.save_artifact(**SCOPE, filename="with/slash/filename", artifact=part)
    assert await service.list_versions(**SCOPE, filename="with/slash/filename") == [0, 1, 2, 3]
    for i, part in enumerate(versions):
        got = await service.load_artifact(**SCOPE, filename="with/slash/filename", version=i)
        assert got == part


async def test_nested_artifact_does_not_leak_versions_into_parent(
    service: StoreArtifactService,
) -> None:
    parent = types.Part.from_text(text="parent v0")
    await service.save_artifact(**SCOPE, filename="doc", artifact=parent)
    for i in range(3):
        await service.save_artifact(
            **SCOPE, filename="doc/nested", artifact=types.Part.from_text(text=f"nested v{i}")
        )
    assert await service.list_versions(**SCOPE, filename="doc") == [0]
    assert await service.load_artifact(**SCOPE, filename="doc") == parent
    saved = await service.save_artifact(
        **SCOPE, filename="doc", artifact=types.Part.from_text(text="parent v1")
    )
    assert saved == 1
    assert await service.list_versions(**SCOPE, filename="doc/nested") == [0, 1, 2]


async def test_list_artifact_versions_excludes_nested_artifact(
    service: StoreArtifactService,
) -> None:
    for name in ("doc", "doc/nested"):
        part = types.Part.from_text(text=name)
        await service.save_artifact(**SCOPE, filename=name, artifact=part)
    versions = await service.list_artifact_versions(**SCOPE, filename="doc")
    assert [v.version for v in versions] == [0]
    assert versions[0].canonical_uri.endswith("/artifacts/doc/versions/0")


async def test_delete_artifact_keeps_nested_artifact(service: StoreArtifactService) -> None:
    nested = types.Part.from_text(text="nested v0")
    await service.save_artifact(
        **SCOPE, filename="doc", artifact=types.Part.from_text(text="parent v0")
    )
    await service.save_artifact(**SCOPE, filename="doc/nested", artifact=nested)
    await service.delete_artifact(**SCOPE, filename="doc")
    assert not await service.list_versions(**SCOPE, filename="doc")
    assert await service.load_artifact(**SCOPE, filename="doc/nested") == nested


async def test_list_keys_includes_nested_artifact(service: StoreArtifactService) -> None:
    for name in ("doc", "doc/nested"):
        part = types.Part.from_text(text=name)
        await service.save_artifact(**SCOPE, filename=name, artifact=part)
    assert await service.list_artifact_keys(**SCOPE) == ["doc", "doc/nested"]


async def test_list_keys_preserves_user_prefix(service: StoreArtifactService) -> None:
    artifact = types.Part.from_bytes(data=b"test_data", mime_type="text/plain")
    for name in ("user:document.pdf", "user:image.png", "session_file.txt"):
        await service.save_artifact(**SCOPE, filename=name, artifact=artifact)
    keys = await service.list_artifact_keys(**SCOPE)
    assert sorted(keys) == ["session_file.txt", "user:document.pdf", "user:image.png"]
    # user-scoped ones are visible from the user's other sessions, and without a session
    other = await service.list_artifact_keys(app_name="app0", user_id="user0", session_id="456")
    assert other == ["user:document.pdf", "user:image.png"]
    alone = await service.list_artifact_keys(app_name="app0", user_id="user0")
    assert alone == ["user:document.pdf", "user:image.png"]
    assert await service.list_artifact_keys(app_name="app0", user_id="user1") == []


async def test_list_artifact_versions_and_get_artifact_version(
    service: StoreArtifactService,
) -> None:
    before = time.time()
    parts = [
        types.Part.from_bytes(data=i.to_bytes(2, byteorder="big"), mime_type="text/plain")
        for i in range(4)
    ]
    for i, part in enumerate(parts):
        await service.save_artifact(
            **SCOPE, filename="filename", artifact=part, custom_metadata={"key": f"value{i}"}
        )
    after = time.time()
    versions = await service.list_artifact_versions(**SCOPE, filename="filename")
    assert [v.version for v in versions] == [0, 1, 2, 3]
    for i, v in enumerate(versions):
        assert v.custom_metadata == {"key": f"value{i}"}
        assert v.mime_type == "text/plain"
        assert before <= v.create_time <= after
        assert v.canonical_uri == (
            f"artifact://apps/app0/users/user0/sessions/123/artifacts/filename/versions/{i}"
        )
    assert await service.get_artifact_version(**SCOPE, filename="filename") == versions[-1]
    assert (
        await service.get_artifact_version(**SCOPE, filename="filename", version=2) == (versions[2])
    )


async def test_list_artifact_versions_with_user_prefix(service: StoreArtifactService) -> None:
    for i in range(4):
        await service.save_artifact(
            **SCOPE,
            filename="user:document.pdf",
            artifact=types.Part.from_bytes(data=bytes([i]), mime_type="text/plain"),
            custom_metadata={"key": f"value{i}"},
        )
    versions = await service.list_artifact_versions(**SCOPE, filename="user:document.pdf")
    assert [(v.version, v.custom_metadata) for v in versions] == [
        (i, {"key": f"value{i}"}) for i in range(4)
    ]
    assert all(isinstance(v, ArtifactVersion) for v in versions)
    assert versions[0].canonical_uri == (
        "artifact://apps/app0/users/user0/artifacts/user:document.pdf/versions/0"
    )


async def test_get_artifact_version_missing(service: StoreArtifactService) -> None:
    assert not await service.get_artifact_version(
        app_name="test_app", user_id="test_user", session_id="session_id", filename="filename"
    )
    await service.save_artifact(
        **SCOPE, filename="filename", artifact=types.Part.from_bytes(data=b"x", mime_type="a/b")
    )
    assert not await service.get_artifact_version(**SCOPE, filename="filename", version=3)


async def test_save_and_load_empty_text_artifact(service: StoreArtifactService) -> None:
    assert (
        await service.save_artifact(
            **SCOPE, filename="empty.txt", artifact=types.Part.from_text(text="")
        )
        == 0
    )
    assert await service.load_artifact(**SCOPE, filename="empty.txt") == types.Part(text="")


async def test_artifact_reference_is_followed(service: StoreArtifactService) -> None:
    target = types.Part.from_text(text="target")
    await service.save_artifact(**SCOPE, filename="folder/file456", artifact=target)
    ref = types.Part(
        file_data=types.FileData(
            file_uri=(
                "artifact://apps/app0/users/user0/sessions/123/artifacts/folder/file456/versions/0"
            ),
            mime_type="text/plain",
        )
    )
    await service.save_artifact(**SCOPE, filename="reference", artifact=ref)
    assert await service.load_artifact(**SCOPE, filename="reference") == target
    outside = types.Part(
        file_data=types.FileData(
            file_uri="artifact://apps/app0/users/other/sessions/123/artifacts/x/versions/0"
        )
    )
    with pytest.raises(InputValidationError):
        await service.save_artifact(**SCOPE, filename="bad", artifact=outside)


async def test_session_scoped_save_needs_a_session(service: StoreArtifactService) -> None:
    with pytest.raises(InputValidationError):
        await service.save_artifact(
            app_name="a", user_id="u", filename="f", artifact=types.Part(text="x")
        )
    assert (
        await service.save_artifact(
            app_name="a", user_id="u", filename="user:f", artifact=types.Part(text="x")
        )
        == 0
    )


async def test_binary_payload_is_stored_raw(
    service: StoreArtifactService,
    artifact_store: Any,  # noqa: F811
) -> None:
    payload = bytes(range(256)) * 64
    part = types.Part(inline_data=types.Blob(mime_type="image/png", data=payload))
    await service.save_artifact(**SCOPE, filename="photo.png", artifact=part)
    assert await service.load_artifact(**SCOPE, filename="photo.png") == part
    keys = (await artifact_store.list_keys("adk/")).keys
    assert len(keys) == 1
    stat = await artifact_store.stat(keys[0])
    assert len(payload) < stat.size < len(payload) + 200  # no base64: one short header line


async def test_concurrent_saves_never_share_a_version(artifact_store_url: str) -> None:  # noqa: F811
    """Two service objects on two store objects, as two processes would have, save at once."""
    if artifact_store_url.startswith("memory"):
        stores = [open_artifact_store(artifact_store_url)] * 2
    else:
        stores = [open_artifact_store(artifact_store_url) for _ in range(2)]
    services = [StoreArtifactService(s) for s in stores]
    try:
        texts = [f"writer{i}" for i in range(8)]
        versions = await asyncio.gather(
            *(
                services[i % 2].save_artifact(
                    **SCOPE, filename="report.txt", artifact=types.Part(text=text)
                )
                for i, text in enumerate(texts)
            )
        )
        assert sorted(versions) == list(range(8))
        loaded = set()
        for version in versions:
            got = await services[0].load_artifact(**SCOPE, filename="report.txt", version=version)
            assert got is not None
            loaded.add(got.text)
        assert loaded == set(texts)
    finally:
        for store in set(stores):
            await store.close()


async def test_adk_cli_options_build_our_services(tmp_path: Any) -> None:
    """What ``adk web --session_service_uri/--artifact_service_uri`` calls, after services.py."""
    from google.adk.cli.utils.service_factory import (
        create_artifact_service_from_options,
        create_session_service_from_options,
    )

    from agent_session_store.integrations.adk import StoreSessionService, register_adk_services

    register_adk_services()
    sessions = create_session_service_from_options(
        base_dir=tmp_path,
        session_service_uri=f"agent-session-store+sqlite:///{tmp_path}/s.db?auto_migrate=true",
    )
    artifacts = create_artifact_service_from_options(
        base_dir=tmp_path, artifact_service_uri=f"agent-session-store+file://{tmp_path}/art"
    )
    assert isinstance(sessions, StoreSessionService)
    assert isinstance(artifacts, StoreArtifactService)
    try:
        part = types.Part(text="kept")
        assert await artifacts.save_artifact(**SCOPE, filename="f", artifact=part) == 0
        assert await artifacts.load_artifact(**SCOPE, filename="f") == part
        assert (tmp_path / "art").is_dir()
    finally:
        await sessions.close()
        await artifacts.close()
