"""uvicorn's server, quiet while idle: it wakes once a second instead of ten times (the date header
it refreshes changes once a second) and at once on SIGTERM/SIGINT; and the supervisor of several
such servers on one port."""

import asyncio
import contextlib
import errno
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType

import uvicorn

from shopkit.ops import metrics, roles
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


class QuietServer:
    """A uvicorn server run by a serve loop of our own, through uvicorn's public API only
    (`Config.load`, `Server.startup`, `on_tick`, `shutdown`, `handle_exit`, `capture_signals`).

    Ours because uvicorn's own loop wakes ten times a second to tick (a third of an idle
    service's CPU): this one ticks once a second (the date header it refreshes changes once a
    second) and at once when SIGTERM/SIGINT come. Signals are uvicorn's: its `capture_signals`
    restores the previous handlers and raises a caught signal again after the graceful
    shutdown; ours, installed inside it, hands the signal to `Server.handle_exit` and wakes the
    loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    @property
    def started(self) -> bool:
        return self.server.started

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        with asyncio.Runner(loop_factory=self.server.config.get_loop_factory()) as runner:
            runner.run(self.serve(sockets))

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        server, config = self.server, self.server.config
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        with server.capture_signals():
            if threading.current_thread() is threading.main_thread():  # as capture_signals
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, self.handle_exit)
            if not config.loaded:
                config.load()
            server.lifespan = config.lifespan_class(config)  # what startup() runs
            await server.startup(sockets=sockets)
            if not server.should_exit:
                await self._tick_until_exit()
            if server.started:
                await server.shutdown(sockets=sockets)

    async def _tick_until_exit(self) -> None:
        assert self._wake is not None
        counter = 0
        while not await self.server.on_tick(counter):
            counter = (counter + 10) % 864_000  # on_tick refreshes the date at multiples of 10
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # no task per tick, as wait_for makes
                    await self._wake.wait()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.server.handle_exit(sig, frame)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)


def serve_processes(config: uvicorn.Config, processes: int) -> None:
    """Serves `config`'s app in `processes` processes sharing one listening socket (the kernel
    hands each connection to one of them). Process 0 runs the service's workers too, the others
    answer HTTP only (shopkit.ops.roles). A process that dies is started again in its place, with
    its part, after a pause that grows while they keep dying young. SIGTERM/SIGINT stop them all.

    Ours rather than uvicorn's supervisor, which pings each process twice a second and runs
    uvicorn's own server loop (ten wakeups a second) in each: here an idle supervisor sleeps
    until a process ends or a signal comes.

    /metrics adds them up: they keep their metrics in a directory this supervisor empties for them
    (shopkit.ops.metrics), and it drops from there the gauges of a process that dies."""
    sock = listening_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    with metrics.shared_by_processes(host, port) as metrics_dir:
        _supervise(config, sock, processes, metrics_dir)


def _supervise(
    config: uvicorn.Config, sock: socket.socket, processes: int, metrics_dir: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    stopping: list[int] = []

    def on_signal(sig: int, _: FrameType | None) -> None:
        stopping.append(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.set_wakeup_fd(wake_write)

    def start(index: int) -> SpawnProcess:
        child = context.Process(
            target=_serve_child, args=(config, sock, index > 0), name=f"http-{index}"
        )
        child.start()
        return child

    children = {index: start(index) for index in range(processes)}
    started = dict.fromkeys(children, time.monotonic())
    failures = dict.fromkeys(children, 0)
    log.info(
        "http_processes_started",
        pids=[c.pid for c in children.values()],
        metrics_dir=str(metrics_dir),
    )
    try:
        while not stopping:
            sentinels = {child.sentinel: index for index, child in children.items()}
            ready = multiprocessing.connection.wait([*sentinels, wake_read])
            if wake_read in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 64)
            for sentinel in ready:
                if stopping or sentinel not in sentinels:
                    continue
                index = sentinels[sentinel]
                dead = children[index]
                dead.join()
                if dead.pid is not None:
                    metrics.process_ended(dead.pid, metrics_dir)
                young = time.monotonic() - started[index] < _YOUNG_S
                failures[index] = failures[index] + 1 if young else 0
                pause = min(_RESTART_PAUSE_S * 2 ** (failures[index] - 1), 30.0) if young else 0
                log.warning(
                    "http_process_died",
                    pid=dead.pid,
                    exit_code=dead.exitcode,
                    runs_workers=index == 0,
                    restart_in_s=pause,
                )
                if pause:
                    multiprocessing.connection.wait([wake_read], timeout=pause)
                    if stopping:
                        break
                children[index] = start(index)
                started[index] = time.monotonic()
    finally:
        signal.set_wakeup_fd(-1)
        for child in children.values():
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        for child in children.values():  # each drains its requests, then stops its workers
            child.join(timeout=(config.timeout_graceful_shutdown or 0) + 30)
            if child.is_alive():
                child.kill()
                child.join()
        sock.close()
        os.close(wake_read)
        os.close(wake_write)


PORT_WAIT_S = 30.0
"""How long a supervisor waits for its port while another process holds it."""


def listening_socket(host: str, port: int, wait_s: float = PORT_WAIT_S) -> socket.socket:
    """The socket the HTTP processes share, bound to `host:port` (each process listens on it).

    A supervisor killed with SIGKILL leaves its HTTP processes behind; they notice and stop
    (`_stop_with`), but one that is draining its requests or stopping the service's workers holds
    the port for a few seconds. A supervisor started meanwhile (`make run` right after a crash)
    waits for the port instead of exiting, up to `wait_s`, and says so; a port held longer than
    that (another program) fails as before. Ours rather than uvicorn's `Config.bind_socket`,
    which exits the process on the first refusal."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            if not said:
                log.warning("http_port_busy_waiting", host=host, port=port, wait_s=wait_s)
                said = True
            time.sleep(0.2)
            continue
        sock.set_inheritable(True)
        if said:
            log.info("http_port_free", host=host, port=port)
        return sock


_YOUNG_S = 10.0
"""A process that dies younger than this is started again after a pause (a crash at start-up
repeats: the pause doubles, up to 30 s)."""
_RESTART_PAUSE_S = 0.5


def _serve_child(config: uvicorn.Config, sock: socket.socket, api_only: bool) -> None:
    if api_only:
        roles.answer_http_only()
    parent = multiprocessing.parent_process()
    if parent is not None:  # orphaned (the supervisor was killed): stop as on SIGTERM
        threading.Thread(target=_stop_with, args=(parent.sentinel,), daemon=True).start()
    QuietServer(config).run(sockets=[sock])


def _stop_with(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os.kill(os.getpid(), signal.SIGTERM)
