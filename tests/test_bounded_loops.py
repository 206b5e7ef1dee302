"""No retry loop in src/ without a bound (hardening item 1).

Every loop that tries again must run under ``agent_session_store.retry`` (its body calls
``pause()``/``pause_sync()``/``next_pause()`` of a ``Retry``). A loop looks like a retry when
it is ``while True``/``while not <flag>``, sleeps, or catches an exception and goes round
again (``continue`` in a handler, or a handler that falls through to the next pass). Loops
of that shape that are not retries (pagination, a stream read to its end, a service thread
that ends with its store) are listed below by function, each with the reason it ends.
A new loop of that shape outside the list fails this test: bound it with retry.py, or add
it here with the reason it cannot spin for ever.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "agent_session_store"

_PAGES = "pagination: ends at the last page (the store returns no next cursor / a short page)"
_STREAM = "reads a stream to its end"
_TESTING = "contract/test helper: runs only inside a test, under that test's own bounds"
_PARSE = "a JSON parser step: each pass consumes input and ends at its close or raises"
_SCAN = "one SCAN/HSCAN pass: ends when the server returns cursor 0"

# (path under src/agent_session_store, function qualname) -> why its loops end.
ALLOWED: dict[tuple[str, str], str] = {
    ("artifacts/cli.py", "_read_chunks"): _STREAM,
    ("artifacts/cli.py", "_ls.run"): _PAGES,
    ("artifacts/files.py", "FileArtifactStore.get_stream"): _STREAM,
    ("artifacts/files.py", "_ordered"): "walks a finite directory tree, popping a level each pass",
    ("artifacts/files.py", "_sweep_tree"): "walks a finite directory tree; stops when closed",
    ("artifacts/s3.py", "S3ArtifactStore.cleanup"): _PAGES,
    ("artifacts/s3.py", "S3ArtifactStore.get_stream"): _STREAM,
    ("base.py", "SessionStoreBase._long_poll"): "ends at the caller's wait_timeout_ms deadline",
    ("base.py", "SessionStoreBase.stream_events"): "a caller-driven iterator; ends on close",
    ("base.py", "SessionStoreBase.iter_export"): (
        "pages up to the latest number read at its start; sleep(0) only lets the loop run"
    ),
    ("codec.py", "_Sliced._items"): _PARSE,
    ("codec.py", "_Sliced._string"): _PARSE,
    ("composite.py", "CompositeSessionStore._delete_session_artifacts"): _PAGES,
    ("integrations/adk.py", "StoreArtifactService._keys"): _PAGES,
    ("integrations/langgraph.py", "StoreCheckpointSaver._newest_first"): (
        "the window grows 4x a pass; ends when a read returns fewer than asked"
    ),
    ("integrations/langgraph.py", "StoreCheckpointSaver._thread_ids"): _PAGES,
    ("integrations/openai_agents.py", "OpenAIAgentsSession._read_items"): (
        "the window doubles a pass; ends when a read returns fewer than asked"
    ),
    ("integrations/openai_agents.py", "OpenAIAgentsSession._newest_item"): (
        "the window grows 4x a pass; ends when a read returns fewer than asked"
    ),
    ("postgres/store.py", "PostgresSessionStore._soft_delete"): (
        "keyset pagination along (updated_us, id): ends at the first empty batch"
    ),
    ("postgres/announcer.py", "Announcer._send"): (
        "each pass sends or fails every wake due (one retry after NotSent, where nothing was "
        "sent); it goes on only while new appends hand in wakes"
    ),
    ("redis/cluster.py", "Cluster.delete_session"): _SCAN,
    ("redis/queries.py", "Queries._rows"): _SCAN,
    ("redis/queries.py", "Queries._events"): _SCAN,
    ("redis/single.py", "SingleNode.collect"): _SCAN,
    ("redis/store.py", "RedisSessionStore._get_events"): (
        "each script call moves past READ_BUDGET candidates; ends when the script says done"
    ),
    ("redis/subscriber.py", "Subscriber._sweep"): (
        "sleeps until the oldest lingering channel is due; ends when none lingers or on close"
    ),
    ("redis/subscriber.py", "Subscriber._run"): (
        "the inner loop reads pushes until the connection fails; the outer one reconnects "
        "under Retry(RECONNECT) and ends when idle or closed"
    ),
    ("polling.py", "SequencePoller._run"): (
        "polls every interval while a session is watched; ends when none is"
    ),
    ("server/streams.py", "_Channel._run"): "reads the store's event stream; ends with it",
    ("server/streams.py", "StreamHub._heartbeats"): "a timer that ends with the last subscriber",
    ("server/streams.py", "SSEResponse._write"): "one SSE stream: ends on its end or the hub's",
    ("server/streams.py", "_until_disconnect"): "ends at the client's http.disconnect",
    ("sqlite/writer.py", "Writer._main"): "the writer thread: ends at the _STOP item",
    ("sqlite/writer.py", "Writer._run"): "walks a finite drained group by index",
    ("sqlite/writer.py", "Writer._group_commit"): (
        "each pass drops the request that aborted the transaction; ends with an empty group "
        "(busy waits inside are bounded by Database.retry_busy)"
    ),
    ("sync.py", "_SyncBridge._iterate"): "drives an async iterator to StopAsyncIteration",
    ("transfer.py", "read_export"): "reads an export stream to its first non-run record",
    ("testing/artifact_contract.py", "all_keys"): _TESTING,
    ("testing/artifact_contract.py", "put_if_absent_racer"): _TESTING,
    ("testing/artifact_contract.py", "CreateOnlyContract.test_put_if_absent_from_chunks.agen"): (
        _TESTING
    ),
    (
        "testing/artifact_contract.py",
        "ArtifactStoreContract.test_put_from_chunks_sync_and_async.agen",
    ): _TESTING,
    (
        "testing/artifact_contract.py",
        "ArtifactStoreContract.test_cancelled_put_leaves_old_object.endless",
    ): _TESTING,
    ("testing/artifact_contract.py", "ArtifactStoreContract.test_list_keys_pages"): _TESTING,
    ("testing/waiting.py", "until"): _TESTING,
    (
        "testing/contract_query.py",
        "QueryContract.test_paging_visits_every_session_once_while_more_arrive",
    ): _TESTING,
    ("testing/contract_query.py", "QueryContract.test_search_and_count_events"): _TESTING,
    ("testing/workers.py", "flush_some_bad"): _TESTING,
    ("testing/workers.py", "conditional_rounds"): _TESTING,
    ("testing/workers.py", "conditional_retry"): _TESTING,
}

_PAUSES = {"pause", "pause_sync", "next_pause", "retrying", "retrying_sync"}
_SLEEPS = {"sleep"}


def _calls(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            if isinstance(f, ast.Attribute):
                yield f.attr
            elif isinstance(f, ast.Name):
                yield f.id


def _ends_pass(body: list[ast.stmt]) -> bool:
    """True when a handler body always leaves the loop (raise, return, break)."""
    return bool(body) and isinstance(body[-1], ast.Raise | ast.Return | ast.Break)


def _retry_shaped(loop: ast.While | ast.For | ast.AsyncFor) -> str | None:
    """Why ``loop`` may be a retry loop, or None. A ``for`` over a collection ends with it;
    a ``for`` over ``range(...)`` or a tuple is a counted retry when it catches and goes on."""
    if isinstance(loop, ast.While):
        test = loop.test
        if isinstance(test, ast.Constant) and test.value is True:
            return "while True"
        if (
            isinstance(test, ast.UnaryOp)
            and isinstance(test.op, ast.Not)
            and isinstance(test.operand, ast.Name | ast.Attribute)
        ):
            return "while not <flag>"
    if _SLEEPS & set(_calls(loop)):
        return "sleeps in the loop"
    counted = isinstance(loop, ast.While) or (
        isinstance(loop.iter, ast.Tuple)
        or (
            isinstance(loop.iter, ast.Call)
            and isinstance(loop.iter.func, ast.Name)
            and loop.iter.func.id == "range"
        )
    )
    if not counted:
        return None
    for sub in _own_nodes(loop):
        if isinstance(sub, ast.Try | ast.TryStar):
            for handler in sub.handlers:
                if any(isinstance(s, ast.Continue) for s in ast.walk(handler)):
                    return "an except handler goes round again"
                if not _ends_pass(handler.body):
                    return "an except handler falls through to the next pass"
    return None


def _own_nodes(loop: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``loop``, not descending into nested functions or nested loops."""
    todo = list(ast.iter_child_nodes(loop))
    while todo:
        node = todo.pop()
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.For | ast.While
        ):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _loops() -> Iterator[tuple[str, str, int, str]]:
    """(file, function, line, why it looks like a retry) for each unbounded-looking loop."""
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)

        def visit(
            node: ast.AST, scope: list[str], rel: str = rel
        ) -> Iterator[tuple[str, str, int, str]]:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    yield from visit(child, [*scope, child.name])
                    continue
                if isinstance(child, ast.While | ast.For | ast.AsyncFor):
                    why = _retry_shaped(child)
                    if why and not _PAUSES & set(_calls(child)):
                        yield rel, ".".join(scope) or "<module>", child.lineno, why
                yield from visit(child, scope)

        yield from visit(tree, [])


def test_every_retry_shaped_loop_is_bounded_or_listed_with_its_reason() -> None:
    found = list(_loops())
    unlisted = [
        f"{rel}:{line} in {func}: {why}"
        for rel, func, line, why in found
        if (rel, func) not in ALLOWED and rel != "retry.py"
    ]
    assert not unlisted, (
        "loops that may spin for ever; bound them with agent_session_store.retry or list "
        "them in ALLOWED with the reason they end:\n" + "\n".join(unlisted)
    )


def test_the_allow_list_names_only_loops_that_exist() -> None:
    present = {(rel, func) for rel, func, _, _ in _loops()}
    stale = sorted(set(ALLOWED) - present)
    assert not stale, f"ALLOWED entries without such a loop (remove them): {stale}"
