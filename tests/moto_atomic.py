"""moto_server with S3's atomic object writes, started by ``moto_s3.py``.

moto checks ``If-None-Match: *`` and then stores, two steps with no lock between them, on a
threaded server: two create-only PUTs of one key can both pass the check and both answer 200
(seen once in CI: the 4-process race test found two creators of one key). S3 itself decides a
conditional write atomically, and the contract tests assert what S3 does. So this launcher
runs moto's own server with its object-writing handlers (PutObject, CopyObject, UploadPart and
CompleteMultipartUpload) holding one lock; reads, listings and deletes stay concurrent.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.s3.responses import S3Response
from moto.server import main

_WRITES = threading.Lock()
_HANDLERS = ("put_object", "_key_response_post")  # the handlers that check If-None-Match


def _serialized(handler: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(handler)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _WRITES:
            return handler(*args, **kwargs)

    return locked


def _patch() -> None:
    for name in _HANDLERS:
        handler = getattr(S3Response, name, None)
        if handler is None:  # a moto release renamed it: fail loudly, never race silently
            raise SystemExit(f"moto_atomic: moto's S3Response has no {name}")
        setattr(S3Response, name, _serialized(handler))


if __name__ == "__main__":
    _patch()
    main()
