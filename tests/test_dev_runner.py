"""The `make run` dev server: loopback only, search attributes registered and kept on restart."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from core import deployment, search
from core.codec import load_keyring
from core.search import ALL_KEYS, dev_server_flags
from core.settings import Settings
from db.migrate import upgrade
from tests.clock_support import eventually

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import dev  # scripts/ is a plain folder, not a package

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {key.name: int(key.indexed_value_type) for key in ALL_KEYS}


def _free_ports() -> tuple[int, int]:
    """Two distinct free ports: both sockets are held open while the OS picks."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return int(first.getsockname()[1]), int(second.getsockname()[1])


async def _custom_attributes(port: int) -> dict[str, int]:
    client = await Client.connect(f"127.0.0.1:{port}")
    request = ListSearchAttributesRequest(namespace="default")
    response = await client.operator_service.list_search_attributes(request)
    return dict(response.custom_attributes)


def _listening_addresses(pid: int) -> set[str]:
    """The addresses a process listens on, read from /proc (Linux)."""
    fds = Path(f"/proc/{pid}/fd")
    inodes = {os.readlink(fd).removeprefix("socket:[").removesuffix("]") for fd in fds.iterdir()}
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state, inode = line.split()[1], line.split()[3], line.split()[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host = local.rsplit(":", 1)[0]
                ipv4 = table == "tcp"
                addresses.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]) if ipv4 else host)
    return addresses


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Servers a test started; all stopped at teardown, even when the test fails."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for server in started:
        dev.stop(server, "temporal server")


def test_search_attributes_registered_and_kept_across_restart(
    tmp_path: Path, servers: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_file = tmp_path / "temporal.db"
    port, ui_port = _free_ports()

    # A DB file from an older version of the project, which had only the first three attributes.
    monkeypatch.setattr(search, "ALL_KEYS", ALL_KEYS[:3])
    monkeypatch.setattr(dev, "dev_server_flags", lambda: dev_server_flags()[:6])
    servers.append(dev.start_dev_server(db_file, port, ui_port))
    dev.stop(servers[-1], "temporal server")
    monkeypatch.undo()

    # The dev server's flags skip a DB file that has some attributes; start_dev_server adds them.
    servers.append(dev.start_dev_server(db_file, port, ui_port))
    assert EXPECTED.items() <= asyncio.run(_custom_attributes(port)).items()
    if Path("/proc/net/tcp").exists():
        assert _listening_addresses(servers[-1].pid) == {"127.0.0.1"}
    dev.stop(servers[-1], "temporal server")
    assert servers[-1].returncode is not None
    assert not dev.port_open(port)

    # Started again on the same file, no workflow ever run: the namespace still has them all.
    servers.append(dev.start_dev_server(db_file, port, ui_port))
    assert EXPECTED.items() <= asyncio.run(_custom_attributes(port)).items()


def test_the_ui_decodes_through_the_codec_endpoint(
    tmp_path: Path, servers: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` makes a key and a token once, and points the UI at the codec endpoint; the UI's
    settings (which anyone reaching the UI reads) hold no credential."""
    monkeypatch.delenv("CODEC_KEYS")
    settings = Settings(codec_key_file=tmp_path / "codec.keys")
    dev.ensure_codec_key(settings)
    first = settings.codec_key_file.read_bytes()
    dev.ensure_codec_key(settings)
    assert settings.codec_key_file.read_bytes() == first  # kept: old payloads stay readable
    assert load_keyring(settings).current == "local-1"
    token = dev.local_secret(tmp_path / "codec.token")
    assert len(token) >= 32 and dev.local_secret(tmp_path / "codec.token") == token
    assert stat.S_IMODE((tmp_path / "codec.token").stat().st_mode) == 0o600

    port, ui_port = _free_ports()
    endpoint = "http://127.0.0.1:8234/"
    servers.append(dev.start_dev_server(tmp_path / "temporal.db", port, ui_port, endpoint))
    answer = httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10)
    assert answer.json()["Codec"]["Endpoint"] == endpoint
    assert token not in answer.text
    # nor does any process's command line (`ps` shows them to every user)
    assert not [p for p in servers if token in str(p.args)]


def test_the_local_worker_takes_over_unless_unversioned() -> None:
    assert dev.versioning_env(Settings(worker_versioning=True)) == {"WORKER_TAKE_OVER": "true"}
    assert dev.versioning_env(Settings(worker_versioning=False)) == {}
    assert dev.version_line(Settings(worker_versioning=False)).startswith("unversioned")


async def test_after_a_pull_the_local_worker_is_the_current_build(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """`make run`'s worker (`python worker.py` with dev.versioning_env) before and after a
    `git pull`: each start makes its own build current, the older one stays listed."""
    name = f"dev-{uuid.uuid4().hex[:10]}"
    database_url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(database_url)
    settings = Settings(worker_versioning=True, worker_deployment_name=name)
    env = {
        **os.environ,
        **dev.versioning_env(settings),
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "DATABASE_URL": database_url,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "TASK_QUEUE": f"dev-{uuid.uuid4()}",
        "WORKER_VERSIONING": "true",
        "WORKER_DEPLOYMENT_NAME": name,
    }
    for build in ("before-pull", "after-pull"):
        command = [sys.executable, "worker.py"]
        worker_env = {**env, "WORKER_BUILD_ID": build}
        worker = await asyncio.to_thread(subprocess.Popen, command, env=worker_env, cwd=ROOT)
        try:

            async def current(build: str = build) -> bool:
                try:
                    info = await deployment.describe(dev_env.client, name)
                except RPCError:  # no worker of the deployment has polled yet
                    return False
                return deployment.current_build(info) == build

            await eventually(current, seconds=60)
        finally:
            dev.stop(worker, "worker")
    info = await deployment.describe(dev_env.client, name)
    builds = {s.deployment_version.build_id for s in info.version_summaries}
    assert builds == {"before-pull", "after-pull"}
