"""A real mosquitto broker for tests: its own config, random ports, TLS, a password file and an ACL.

Reusable by any test that needs a broker (sync, doctor, ...)::

    certs = make_certs(tmp_dir)                      # CA, server (localhost/127.0.0.1), client, and a rogue CA
    broker = Mosquitto(tmp_dir, users={"unit-1": "pw", "hub": "hubpw"}, hub_users=["hub"], certs=certs)
    broker.start()   ...   broker.stop(); broker.start()  (same ports)   ...   broker.close()

Listeners: ``broker.port`` (plain TCP, password required) and ``broker.tls_port`` (TLS; client
certificates are accepted and, with ``require_client_cert=True``, required). ACL: every device user
may only use ``{prefix}/+/{username}/#``; hub users may use ``{prefix}/#``. Persistence is off, so a
restart loses every session and retained message (the harshest case for the agent).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def find_mosquitto() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (scripts/test.sh does it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path  # a CA that signed nothing we use: an "untrusted server certificate" for clients using it


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> Certs:
    """Generate a CA, a server certificate for localhost/127.0.0.1, a client certificate and a rogue CA."""
    d.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "rogue"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=test-{name}-ca",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            cwd=d,
        )
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn, ext in (("server", "localhost", ["-extfile", "server.ext"]), ("client", "unit-tls", [])):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            *ext,
            cwd=d,
        )
    for p in d.glob("*.key"):
        p.chmod(0o644)  # mosquitto may drop privileges
    return Certs(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key", d / "rogue.crt"
    )


class Mosquitto:
    """A mosquitto process with its own config (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str],
        hub_users: list[str] = (),
        prefix: str = "city",
        certs: Certs | None = None,
        require_client_cert: bool = False,
        anonymous: bool = False,
    ) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users)
        self.hub_users = list(hub_users)
        self.prefix = prefix
        self.certs = certs
        self.require_client_cert = require_client_cert
        self.anonymous = anonymous
        self.port = free_port()
        self.tls_port = free_port() if certs else None
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "mosquitto.log"
        self._write_config()

    def _write_config(self) -> None:
        passwd = self.dir / "passwd"
        passwd.write_text("")
        for user, pw in self.users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
        passwd.chmod(0o644)
        acl = [f"user {u}\ntopic readwrite {self.prefix}/#\ntopic read $SYS/#\n" for u in self.hub_users]
        acl.append(f"pattern readwrite {self.prefix}/+/%u/#\n")
        (self.dir / "acl").write_text("\n".join(acl))
        import pwd

        # as root, mosquitto drops to user "mosquitto", which cannot read a private temp dir: stay who we are
        lines = [
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            f"password_file {passwd}",
            f"acl_file {self.dir / 'acl'}",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type all",
            "max_inflight_messages 1000",
            "max_queued_messages 100000",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.certs:
            c = self.certs
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {c.ca}",
                f"certfile {c.server_cert}",
                f"keyfile {c.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        if self.proc and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        ports = [p for p in (self.port, self.tls_port) if p]
        while ports:  # no readiness event from mosquitto: poll its ports
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err} {self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", ports[0]), timeout=0.2):
                    ports.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not listen within {timeout_s} s: {self.log_text()[-2000:]}"
                    ) from None
                time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
