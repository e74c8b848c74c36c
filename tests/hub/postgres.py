"""A real PostgreSQL for tests and benchmarks: its own data directory, a random port, a unix socket in tmp.

    pg = Postgres().start()       # initdb + pg_ctl start (as the ``postgres`` user when we are root)
    pg.dsn                        # postgresql://hub@/hub?host=<socket dir>&port=<port>
    pg.stop()                     # fast shutdown, data directory removed

Debian's ``postgresql`` package provides the programs (scripts/test.sh installs it). PostgreSQL
refuses to run as root, so as root the cluster belongs to the ``postgres`` user (created by the
package) and lives in a directory of its own under /tmp that this user can reach.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.sync.mosquitto import free_port


def find_pg_bin() -> Path:
    """The directory holding initdb/pg_ctl (Debian keeps them under /usr/lib/postgresql/<v>/bin)."""
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(Path(cand) / "initdb", os.X_OK):
            return Path(cand)
    w = shutil.which("initdb")
    if w:
        return Path(w).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (scripts/test.sh does it)")


class Postgres:
    """One throw-away cluster (see the module docstring)."""

    def __init__(self, db: str = "hub", user: str = "hub") -> None:
        self.bin = find_pg_bin()
        self.db, self.user = db, user
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="edge-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root but there is no 'postgres' user: apt-get install postgresql"
                ) from None
            self.run_as = "postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@/{self.db}?host={self.sock}&port={self.port}"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def _run(self, *args: str, timeout: float = 120) -> None:
        r = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {r.stderr.strip()} {self.log_text()[-2000:]}")

    def start(self, timeout_s: float = 60.0) -> Postgres:
        self.sock.mkdir()
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o755)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "-N",
        )
        opts = (
            f"-p {self.port} -k {self.sock} -c listen_addresses='' -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
            timeout=timeout_s + 10,
        )
        self._run(
            str(self.bin / "createdb"), "-h", str(self.sock), "-p", str(self.port), "-U", self.user, self.db
        )
        return self

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


if __name__ == "__main__":  # a quick manual check
    pg = Postgres().start()
    print(pg.dsn)
    t = time.monotonic()
    pg.stop()
    print(f"stopped in {time.monotonic() - t:.2f} s")
