"""Shared test set-up: a tag that keeps this run's server-side data apart from any other run's."""

from __future__ import annotations

import os
import uuid

import pytest

RUN_TAG = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique_name() -> str:
    """A fresh name per test (database schema, key prefix, bucket prefix)."""
    return f"ass_{RUN_TAG}_{uuid.uuid4().hex[:8]}"


from backends import open_backend  # noqa: E402, F401  (a fresh store of any backend, by name)
from moto_s3 import s3_endpoint  # noqa: E402, F401  (session fixture: a real S3 endpoint)
from test_redis import redis_cluster  # noqa: E402, F401  (session fixture: a real cluster)
