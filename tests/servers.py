"""Servers a test starts for itself: a RabbitMQ node and a PgBouncer, each on free ports of
127.0.0.1 under a temporary directory, stopped by the test (Debian's rabbitmq-server and
pgbouncer; .ci/run installs them)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import kombu

from tests.support import free_port, wait_for

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's, without the su wrapper


def _amqp_answers(url: str) -> bool:
    try:
        with kombu.Connection(url, connect_timeout=2) as connection:
            connection.connect()
    except Exception:
        return False
    return True


def _stop(process: subprocess.Popen[bytes] | None, *, sig: int = signal.SIGTERM) -> None:
    """Signal the process group of ``process`` (started in a session of its own) and reap it."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class RabbitMQ:
    """A RabbitMQ node of its own: data, logs, Erlang cookie and epmd under ``base``.

    ``kill`` is a crash (SIGKILL) and ``start`` brings the node back on the same data: what a
    durable broker must survive. RabbitMQ boots in seconds (tens on a loaded machine)."""

    base: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    node: subprocess.Popen[bytes] | None = None
    epmd: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")  # no management plugin: faster
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "default_user = jobplatform\n"
            f"default_pass = {self.password}\n"
            "log.file.level = warning\n"
            "log.console = false\n"
        )

    @property
    def url(self) -> str:
        return f"amqp://jobplatform:{self.password}@127.0.0.1:{self.port}//"

    @property
    def log(self) -> Path:
        return self.base / "node.log"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),  # the Erlang cookie
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": f"jp{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
        }

    def start(self, timeout: float = 180) -> None:
        if self.epmd is None or self.epmd.poll() is not None:
            # An epmd of its own, in the foreground, so that stopping the node leaves nothing.
            self.epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        with self.log.open("ab") as out:
            self.node = subprocess.Popen(
                [RABBITMQ_SERVER], env=self.env(), cwd=self.base, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        node = self.node
        wait_for(
            lambda: node.poll() is not None or _amqp_answers(self.url),
            timeout=timeout,
            what="RabbitMQ to accept connections",
        )
        assert node.poll() is None, self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """A crash: SIGKILL to the node (the Erlang VM and its helpers)."""
        _stop(self.node, sig=signal.SIGKILL)

    def stop(self) -> None:
        _stop(self.node, sig=signal.SIGKILL)  # its data goes with the temporary directory
        _stop(self.epmd)


def pgbouncer_version() -> tuple[int, ...]:
    out = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"PgBouncer (\d+)\.(\d+)", out.stdout)
    assert match, out.stdout
    return tuple(int(part) for part in match.groups())


@dataclass
class PgBouncer:
    """PgBouncer in front of one PostgreSQL server, trusting ``user`` (the tests' server trusts
    it too). Transaction pooling over ``pool_size`` server connections per database: many more
    clients than sessions, each transaction on whichever is free."""

    base: Path
    server_host: str
    server_port: int
    user: str
    password: str = ""
    pool_size: int = 4
    port: int = field(default_factory=free_port)
    version: tuple[int, ...] = field(default_factory=pgbouncer_version)
    process: subprocess.Popen[bytes] | None = None

    @property
    def prepared_statements(self) -> bool:
        """PgBouncer 1.21 keeps protocol-level prepared statements in transaction mode."""
        return self.version >= (1, 21)

    def config(self) -> str:
        server = f"host={self.server_host} port={self.server_port}"
        if self.password:
            server += f" password={self.password}"
        lines = [
            "[databases]",
            f"* = {server}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.base / 'users.txt'}",
            f"admin_users = {self.user}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 200",
        ]
        if self.prepared_statements:
            lines.append("max_prepared_statements = 200")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        # Readable by the user PgBouncer switches to when started as root (it refuses root).
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        (self.base / "users.txt").write_text(f'"{self.user}" ""\n')
        (self.base / "pgbouncer.ini").write_text(self.config())
        argv = ["pgbouncer", str(self.base / "pgbouncer.ini")]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", _unprivileged_user()]
        with (self.base / "pgbouncer.log").open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = self.process
        wait_for(
            lambda: process.poll() is not None or "listening on" in self.output(),
            timeout=20,
            what="PgBouncer to listen",
        )
        assert process.poll() is None, self.output()

    def output(self) -> str:
        return (self.base / "pgbouncer.log").read_text(errors="replace")

    def url(self, database: str, **query: str) -> str:
        options = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}" + (
            f"?{options}" if options else ""
        )

    def stop(self) -> None:
        _stop(self.process, sig=signal.SIGINT)  # SIGINT: PgBouncer's immediate shutdown


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        if shutil.which("id") and subprocess.run(["id", name], capture_output=True).returncode == 0:
            return name
    raise AssertionError("no unprivileged user for PgBouncer to run as")
