"""A real S3 HTTP endpoint for the tests: moto_server on loopback, one per test session."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    process: subprocess.Popen[bytes]

    def client(self) -> object:
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")

    def store_url(self, prefix: str, **options: str) -> str:
        query = "&".join(
            f"{k}={v}"
            for k, v in {"endpoint_url": self.url, **options, "region": "us-east-1"}.items()
        )
        return f"s3://{self.bucket}/{prefix}?{query}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """Starts moto_server, waits until it answers, creates a bucket; stops it at the end."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in DUMMY_CREDENTIALS.items():
            env.setenv(name, value)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        port = free_port()
        # moto's own server, its conditional writes made atomic as S3's are (moto_atomic.py)
        launcher = Path(__file__).with_name("moto_atomic.py")
        process = subprocess.Popen(
            [sys.executable, str(launcher), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:  # readiness poll of a process we just started, not a race cover
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("moto_server did not start") from None
                    time.sleep(0.05)
            endpoint = S3Endpoint(f"http://127.0.0.1:{port}", "ass-test-bucket", process)
            boto3.client("s3", endpoint_url=endpoint.url, region_name="us-east-1").create_bucket(
                Bucket=endpoint.bucket
            )
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
