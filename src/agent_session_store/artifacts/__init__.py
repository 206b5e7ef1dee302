"""Artifact stores (contract 4): key → bytes for large blobs, in memory, on disk or in S3.

Open one by URL with ``agent_session_store.urls.open_artifact_store`` (``memory://``,
``file:///abs/root``, ``s3://bucket/prefix``); backends are imported only when used, so the
S3 client is needed only for ``s3://``.
"""

from __future__ import annotations

from ..ports import ArtifactData, ArtifactStat, ArtifactStore, KeyPage

__all__ = ["ArtifactData", "ArtifactStat", "ArtifactStore", "KeyPage"]
