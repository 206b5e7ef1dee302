"""The server's bars (issue 11), each measured against something in the same run:

* API: ``GET /api/sessions/{id}`` (session and stats) and ``GET …/events?limit=100`` under 50
  concurrent keep-alive clients against ``serve`` on SQLite, in one process and with
  ``--workers 2``: p99 latency and throughput, the latter against 50 tasks calling the store
  directly (in one process) for the same work.
* SSE fan-out: N subscribers on one session (1,000; 200 with ``--quick``) while 100 events/s
  are appended: every subscriber must get every event in order (a cut-off one resumes by
  ``Last-Event-ID``), delivery p99, and the server's RSS growth.
* The HTML page of a 1,000-event session: server time to render it.

The load generators are plain asyncio sockets (no HTTP client library) so the client side
costs as little as possible; the server runs in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from agent_session_store import Event, EventType, Run, RunStatus, Session, open_session_store

from .common import Row, check_max, percentile, rate

SID = "ses_bench"
#: One SSE subscriber in this many records delivery latencies (all check order).
PROBE_EVERY = 10
N_EVENTS = 1000
CLIENTS = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _seed(url: str) -> None:
    async with open_session_store(url) as store:
        await store.save_session(Session(id=SID, agent_id="bench", tags=["bench"]))
        run = Run(
            id="run_bench",
            session_id=SID,
            status=RunStatus.COMPLETED,
            token_usage={"input_tokens": 100, "output_tokens": 20},
            cost_usd=0.001,
        )
        await store.save_run(run)
        kinds = [
            EventType.MESSAGE_SENT,
            EventType.TOOL_CALL_STARTED,
            EventType.TOOL_CALL_COMPLETED,
            EventType.MESSAGE_RECEIVED,
        ]
        events = [
            Event(
                type=kinds[i % 4],
                session_id=SID,
                run_id=run.id,
                data={
                    "role": "user",
                    "content": f"message {i} " + "lorem ipsum " * 8,
                    "tool_name": "t",
                    "tool_call_id": f"c{i // 4}",
                },
            )
            for i in range(N_EVENTS)
        ]
        for start in range(0, N_EVENTS, 200):
            await store.append_events(events[start : start + 200])


class _ServerProcess:
    def __init__(self, url: str, workers: int = 1) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent_session_store",
                "serve",
                "--url",
                url,
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("server did not start")

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20

    def cpu_s(self) -> float:
        """The server's CPU time, its worker processes' included."""
        import psutil

        parent = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [parent, *parent.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- API load


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"content-length: (\d+)", head, re.I)
    if m is None:
        raise RuntimeError("no content-length")
    await reader.readexactly(int(m.group(1)))
    return status


async def _http_load(port: int, path: str, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status = await _get(reader, writer, path)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"{path}: HTTP {status}")
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return len(latencies), latencies


async def _direct_load(url: str, work: str, seconds: float) -> int:
    from agent_session_store.server import queries

    done = 0
    async with open_session_store(url) as store:
        stop = time.perf_counter() + seconds

        async def task() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                if work == "session":
                    s = await store.get_session(SID)
                    st = await queries.session_stats(store, SID)
                    json.dumps({"session": s.to_dict(), "stats": queries.to_json(st)})
                else:
                    ev = await store.get_events(SID, limit=100)
                    json.dumps([e.to_dict() for e in ev])
                done += 1

        await asyncio.gather(*(task() for _ in range(CLIENTS)))
    return done


async def _http_client_main(port: int, path: str, seconds: float) -> None:
    """A client process: 50 keep-alive clients for ``seconds``; prints count, latencies, CPU."""
    cpu0 = _own_cpu()
    n, lat = await _http_load(port, path, seconds)
    print(json.dumps({"n": n, "lat": lat, "cpu_s": _own_cpu() - cpu0}))


async def _http_round(server: _ServerProcess, path: str, seconds: float) -> dict[str, Any]:
    cpu0 = server.cpu_s()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.server",
        "http-client",
        str(server.port),
        path,
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    got: dict[str, Any] = json.loads(out)
    got["server_cpu_s"] = server.cpu_s() - cpu0
    return got


async def _api_rows(url: str, server: _ServerProcess, seconds: float, workers: int) -> list[Row]:
    """HTTP (client in its own process) and direct calls alternate, twice each, so a change
    in the machine's load hits both sides alike; the ratio is what counts."""
    rows = []
    served_by = "1 worker" if workers == 1 else f"{workers} workers"
    for what, path, work in (
        ("GET session (+stats)", f"/api/sessions/{SID}", "session"),
        ("GET 100-event page", f"/api/sessions/{SID}/events?limit=100", "events"),
    ):
        case = f"{what} ({served_by})"
        await _http_round(server, path, 0.5)  # warm up
        n = direct = 0
        lat: list[float] = []
        client_cpu = server_cpu = 0.0
        loads = [os.getloadavg()[0]]
        for _ in range(2):
            got = await _http_round(server, path, seconds / 2)
            n += got["n"]
            lat += got["lat"]
            client_cpu += got["cpu_s"]
            server_cpu += got["server_cpu_s"]
            direct += await _direct_load(url, work, seconds / 2)
            loads.append(os.getloadavg()[0])
        lat.sort()
        p99 = percentile(lat, 99) * 1000
        info = {
            "p50_ms": percentile(lat, 50) * 1000,
            "requests": n,
            "server_cpu_ms_per_request": server_cpu / n * 1000,
            "client_cpu_ms_per_request": client_cpu / n * 1000,
            "load_avg_1m": loads,
        }
        rows.append(
            check_max(
                Row("sqlite", f"{case}, {CLIENTS} clients: p99", p99, "ms", extra=info),
                50,
                "<= 50 ms",
            )
        )
        served, called = rate(n, seconds), rate(direct, seconds)
        row = Row(
            "sqlite",
            f"{case}: throughput vs direct store calls",
            served,
            "req/s",
            raw=called,
            bar=">= 0.5 x direct",
        )
        row.passed = served >= 0.5 * called
        rows.append(row)
    return rows


# ---------------------------------------------------------------- SSE fan-out

_IDS = re.compile(rb"\nid: (\d+)\n")
# An appended event's frame: its id and the appender's clock just before the append.
_ID_TS = re.compile(rb'\nid: (\d+)\ndata: [^\n]*?"data":\{"t":([0-9.]+)')


class _Subscriber(asyncio.Protocol):
    """One SSE connection of a client process: checks order; a probe also records each
    event's delivery latency."""

    def __init__(self, client: _SSEClient, last: int, probe: bool) -> None:
        self.client = client
        self.probe = probe
        self.buf = b""
        self.last = last
        self.ok = True
        self.started = False
        self.done = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.started:
            self.started = True
            self.client.started()
        buf = self.buf + data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.buf = buf
            return
        self.buf = buf[cut + 2 :]
        text = b"\n" + buf[: cut + 2]
        ids = list(map(int, _IDS.findall(text)))
        if ids:
            # Every id in order, each once; all of this chunk arrived now.
            if ids != list(range(self.last + 1, self.last + 1 + len(ids))):
                self.ok = False
            self.last = ids[-1]
            self.client.delivered += len(ids)
            if self.probe:
                pairs = _ID_TS.findall(text)
                self.client.seqs.extend([int(seq) for seq, _ in pairs])
                self.client.latencies.extend([now - float(t) for _, t in pairs])
        if self.last >= self.client.expected and not self.done:
            self.done = True
            self.client.finished()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _SSEClient:
    """Many SSE subscribers in one process; a cut-off one resumes by ``Last-Event-ID``."""

    def __init__(self, port: int, subscribers: int, expected: int) -> None:
        self.port = port
        self.subscribers = subscribers
        self.expected = expected
        self.latencies = array("d")
        self.seqs = array("q")  # the event of each latency
        self.delivered = 0
        self.reconnects = 0
        self.complete = 0
        self.subs: list[_Subscriber] = []
        self._started = 0
        self.all_started = asyncio.Event()
        self.all_done = asyncio.Event()

    def started(self) -> None:
        self._started += 1
        if self._started == self.subscribers:
            self.all_started.set()

    def finished(self) -> None:
        self.complete += 1
        if self.complete == self.subscribers:
            self.all_done.set()

    async def follow(self, stop: asyncio.Event, probe: bool) -> _Subscriber:
        loop = asyncio.get_running_loop()
        last = N_EVENTS
        first = True
        while True:
            transport, sub = await loop.create_connection(
                functools.partial(_Subscriber, self, last, probe), "127.0.0.1", self.port
            )
            if not first:
                sub.started = True
            first = False
            transport.write(
                f"GET /api/sessions/{SID}/events/stream?after={N_EVENTS} HTTP/1.1\r\n"
                f"Host: bench\r\nLast-Event-ID: {last}\r\n\r\n".encode()
            )
            stopping: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
            waits: list[asyncio.Future[object]] = [sub.closed, stopping]  # type: ignore[list-item]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                transport.close()
                return sub
            self.reconnects += 1
            last = sub.last


async def _sse_client_main(port: int, subscribers: int, expected: int, out: str) -> None:
    """A client process: connect, say "ready", take every event, write the latencies.

    Every subscriber checks that it got each event once, in order; one in ``PROBE_EVERY``
    (the probes) also parses each event's timestamp for the latency. Parsing that for all
    1,000 doubled the clients' CPU, and on 2 cores a client behind on its reads measured its
    own backlog, not the server's delivery."""
    client = _SSEClient(port, subscribers, expected)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(client.follow(stop, i % PROBE_EVERY == 0)) for i in range(subscribers)
    ]
    await asyncio.wait_for(client.all_started.wait(), 60)
    cpu0 = _own_cpu()
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    timeout = float(line.strip() or 30)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client.all_done.wait(), timeout)
    cpu1 = _own_cpu()
    stop.set()
    subs = await asyncio.gather(*tasks)
    complete = sum(1 for s in subs if s.ok and s.last == expected)
    with open(out, "wb") as f:  # noqa: ASYNC230 - once, after the measurement
        f.write(client.latencies.tobytes())
    with open(out + ".seq", "wb") as f:  # noqa: ASYNC230 - once, after the measurement
        f.write(client.seqs.tobytes())
    print(
        json.dumps(
            {
                "complete": complete,
                "reconnects": client.reconnects,
                "delivered": client.delivered,
                "cpu_s": cpu1 - cpu0,
            }
        )
    )


# Prints the rate it achieved, then each event's append time (the store's commit, fsync
# included), so the delivery latency can be told apart from the time the append itself took.
_APPENDER = """
import asyncio, json, time
from agent_session_store import Event, EventType, open_session_store
async def main():
    commits = {{}}
    async with open_session_store({url!r}) as store:
        start = time.perf_counter()
        for i in range({n}):
            delay = start + i / 100 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = time.time()
            got = await store.append_event_with_sequence(Event(type=EventType.MESSAGE_STREAMED,
                session_id={sid!r}, data={{"t": t, "delta": "x" * 40}}))
            commits[got.sequence_number] = time.time() - t
        print({n} / (time.perf_counter() - start))
        print(json.dumps(commits))
asyncio.run(main())
"""


async def _fanout_rows(
    url: str, server: _ServerProcess, subscribers: int, seconds: float
) -> list[Row]:
    n = int(seconds * 100)
    expected = N_EVENTS + n
    # The subscribers live in client processes of their own (uvloop), so neither this
    # process nor the appender competes with them, and each gets its share of the CPUs.
    procs = max(1, int(os.environ.get("BENCH_SSE_CLIENT_PROCS", "2")))
    shares = [subscribers // procs + (i < subscribers % procs) for i in range(procs)]
    tmp = tempfile.mkdtemp()
    outs = [str(Path(tmp) / f"lat{i}.bin") for i in range(procs)]
    rss0 = server.rss_mb()
    clients = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.server",
            "sse-client",
            str(server.port),
            str(share),
            str(expected),
            out,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for share, out in zip(shares, outs, strict=True)
    ]
    for c in clients:
        assert c.stdout is not None
        ready = await asyncio.wait_for(c.stdout.readline(), 90)
        if ready.strip() != b"ready":
            raise RuntimeError(f"SSE client did not start: {ready!r}")
    rss1 = server.rss_mb()
    cpu0 = server.cpu_s()
    load0 = os.getloadavg()[0]
    # The appender is its own process too.
    script = _APPENDER.format(url=url, sid=SID, n=n)
    for c in clients:
        assert c.stdin is not None
        c.stdin.write(b"%f\n" % (seconds + 30))
        await c.stdin.drain()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    rate_line, commits_line = [*out.decode().strip().splitlines(), "nan", "{}"][:2]
    achieved = float(rate_line)
    commit_s = {int(k): v for k, v in json.loads(commits_line).items()}
    results = []
    for c in clients:
        got, _ = await c.communicate()
        results.append(json.loads(got.decode().strip().splitlines()[-1]))
    rss2 = server.rss_mb()
    cpu1 = server.cpu_s()
    load1 = os.getloadavg()[0]
    latencies = array("d")
    seqs = array("q")
    for path in outs:
        with open(path, "rb") as f:  # noqa: ASYNC230 - after the measurement
            latencies.frombytes(f.read())
        with open(path + ".seq", "rb") as f:  # noqa: ASYNC230 - after the measurement
            seqs.frombytes(f.read())
        os.unlink(path)
        os.unlink(path + ".seq")
    os.rmdir(tmp)
    # From the append's return (the commit visible to every reader) to the subscriber.
    after_commit = sorted(lat - commit_s.get(seq, 0.0) for lat, seq in zip(latencies, seqs))
    commits = sorted(commit_s.values())
    complete = sum(r["complete"] for r in results)
    lat = sorted(latencies)
    p99 = percentile(lat, 99) * 1000 if lat else float("inf")
    info = {
        "subscribers": subscribers,
        "client_processes": procs,
        "events": n,
        "append_rate": achieved,
        "deliveries": sum(r["delivered"] for r in results),
        "latency_samples": len(lat),
        "probe_every": PROBE_EVERY,
        "reconnects": sum(r["reconnects"] for r in results),
        "server_cpu_s": cpu1 - cpu0,
        "client_cpu_s": sum(r["cpu_s"] for r in results),
        "rss_before_mb": rss0,
        "rss_subscribed_mb": rss1,
        "rss_end_mb": rss2,
        "load_avg_1m": [load0, load1],
        "append_call_p50_ms": percentile(commits, 50) * 1000 if commits else None,
        "append_call_p99_ms": percentile(commits, 99) * 1000 if commits else None,
        "delivery_after_commit_p50_ms": (
            percentile(after_commit, 50) * 1000 if after_commit else None
        ),
        "delivery_after_commit_p99_ms": (
            percentile(after_commit, 99) * 1000 if after_commit else None
        ),
    }
    rows = [
        Row(
            "sqlite",
            f"SSE {subscribers} subscribers, 100 appends/s: complete and in order",
            complete,
            "subscribers",
            bar=f"= {subscribers}",
            passed=complete == subscribers,
            extra=info,
        ),
        check_max(
            Row(
                "sqlite",
                f"SSE {subscribers} subscribers: delivery p99",
                p99,
                "ms",
                extra={"p50_ms": percentile(lat, 50) * 1000 if lat else None},
            ),
            100,
            "<= 100 ms",
        ),
        Row(
            "sqlite",
            f"SSE {subscribers} subscribers: server RSS growth",
            rss2 - rss0,
            "MB",
            higher_is_better=False,
            bar="bounded (reported)",
            extra=info,
        ),
    ]
    return rows


# ---------------------------------------------------------------- page render


async def _page_row(url: str, repeats: int) -> Row:
    import httpx

    from agent_session_store.server import create_app

    async with open_session_store(url) as store:
        app = create_app(store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            times = []
            for _ in range(repeats + 2):
                t0 = time.perf_counter()
                r = await client.get(f"/sessions/{SID}")
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200 and r.text.count('<li id="e') == N_EVENTS, r.status_code
    times = times[2:]
    return check_max(
        Row(
            "sqlite",
            f"session page, {N_EVENTS} events: server time (median)",
            sorted(times)[len(times) // 2] * 1000,
            "ms",
            extra={"max_ms": max(times) * 1000, "bytes": len(r.content)},
        ),
        100,
        "<= 100 ms",
    )


async def run(quick: bool = False) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}?auto_migrate=true"
        await _seed(url)
        rows = [await _page_row(url, 5 if quick else 20)]
        for workers in (1, 2):  # serve --workers 2: one process per core
            server = _ServerProcess(url.split("?")[0], workers)
            try:
                await server.ready()
                rows += await _api_rows(url, server, 2.0 if quick else 5.0, workers)
            finally:
                server.stop()
        server = _ServerProcess(url.split("?")[0])
        try:
            await server.ready()
            subscribers = int(os.environ.get("BENCH_SSE_SUBSCRIBERS", 200 if quick else 1000))
            rows += await _fanout_rows(url, server, subscribers, 3.0 if quick else 10.0)
        finally:
            server.stop()
    return rows


def _client_loop() -> asyncio.AbstractEventLoop:
    """Load generators run on uvloop when it is there: less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


if __name__ == "__main__" and sys.argv[1:2] == ["sse-client"]:
    port_s, count_s, expected_s, out_path = sys.argv[2:6]
    with asyncio.Runner(loop_factory=_client_loop) as runner:
        runner.run(_sse_client_main(int(port_s), int(count_s), int(expected_s), out_path))
elif __name__ == "__main__" and sys.argv[1:2] == ["http-client"]:
    with asyncio.Runner(loop_factory=_client_loop) as runner:
        runner.run(_http_client_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4])))
elif __name__ == "__main__":
    from .__main__ import table

    quick = "--quick" in sys.argv
    got = asyncio.run(run(quick=quick))
    print(table(got))
    for r in got:
        if r.extra:
            print(r.case, json.dumps(r.extra))
    with contextlib.suppress(Exception):
        os.sync()
