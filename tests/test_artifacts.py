"""The artifact backends against the shared contract, plus what is specific to each."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from agent_session_store.testing import ArtifactStoreContract
from agent_session_store.testing.artifact_contract import FAITHFUL_KEYS
from moto_s3 import S3Endpoint


class TestInMemoryArtifactStore(ArtifactStoreContract):
    durable = False

    @pytest.fixture
    def artifact_url(self) -> str:
        return "memory://"


class TestFileArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_url(self, tmp_path: Path) -> str:
        return f"file://{tmp_path}/artifacts"


class TestS3ArtifactStore(ArtifactStoreContract):
    # moto_server routes requests with werkzeug, whose path pattern does not match a newline:
    # it answers 404 to any request for such a key. Real S3 stores it; the store sends it
    # unchanged (URL-encoded), so this is a limit of the test server only.
    faithful_keys: ClassVar[list[str]] = [k for k in FAITHFUL_KEYS if "\n" not in k]

    @pytest.fixture
    def artifact_url(self, s3_endpoint: S3Endpoint, unique_name: str) -> str:
        # 5 MiB parts (S3 minimum) and threshold, so the 21 MiB object takes the multipart
        # upload and the parallel ranged get.
        return s3_endpoint.store_url(
            f"{unique_name}/", part_size=str(5 << 20), multipart_threshold=str(5 << 20)
        )
