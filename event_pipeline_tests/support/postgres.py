"""A throwaway PostgreSQL server for tests: real ``initdb`` + ``pg_ctl``, loopback only::

    server = PostgresServer(tmp_dir).start()
    url = server.create_database()          # postgresql+psycopg://postgres@127.0.0.1:PORT/t_...
    ...
    server.stop()

fsync and full_page_writes are off: a test database that dies with the machine is worth nothing
anyway, and it makes DDL and COPY several times faster. synchronous_commit stays on, so a commit
is in the kernel's page cache before it is acknowledged and survives the server being killed
(``stop()`` is ``-m immediate``), which the database-down tests rely on.
The server is stopped at interpreter exit and, through a watchdog process, even when the test
process is killed outright, so no run leaves a postmaster behind.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

SUPERUSER = "postgres"
HOST = "127.0.0.1"
# A dedicated account for running the server when we are root and the distribution's
# `postgres` account is missing (PostgreSQL refuses to run as root).
FALLBACK_OS_USER = "event-pipeline-pg"
# sun_path is 108 bytes on Linux; the socket file name itself adds ~20.
_MAX_SOCKET_DIR = 80

_WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.read()  # returns at EOF: the test process closed the pipe or died
subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
if sys.argv[1]:
    shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class PostgresUnavailable(Exception):
    """No usable PostgreSQL installation (binaries missing, or the server would not start)."""


def find_pg_bin(name: str) -> Path | None:
    """``name`` (initdb, pg_ctl) from PATH, else the newest Debian/Ubuntu install, else /usr/local/bin."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    versioned = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: _version_key(Path(p)), reverse=True
    )
    candidates = [*versioned, f"/usr/local/bin/{name}", f"/usr/local/pgsql/bin/{name}"]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _version_key(path: Path) -> tuple[int, ...]:
    version = path.parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit()) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temp directory, listening on 127.0.0.1:<random port>."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.port: int | None = None
        self._run_as: str | None = None
        self._root: Path | None = None  # where data/, sock/ and the log live
        self._owns_root = False
        self._initdb: Path | None = None
        self._pg_ctl: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    # -- paths ----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._require_root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_root() / "sock"

    @property
    def log_file(self) -> Path:
        return self._require_root() / "server.log"

    def _require_root(self) -> Path:
        if self._root is None:
            raise RuntimeError("PostgresServer has not been started")
        return self._root

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb (first time only), then start on a free port. Calling it again after ``stop()``
        restarts the same cluster on the same port, for tests that take the server away and back."""
        if self.is_running():
            return self
        self._initdb = self._initdb or find_pg_bin("initdb")
        self._pg_ctl = self._pg_ctl or find_pg_bin("pg_ctl")
        missing = [n for n, p in (("initdb", self._initdb), ("pg_ctl", self._pg_ctl)) if p is None]
        if missing:
            raise PostgresUnavailable(
                f"{' and '.join(missing)} not found in PATH, /usr/lib/postgresql/*/bin or /usr/local/bin; "
                "install PostgreSQL (e.g. `apt-get install -y postgresql`)"
            )
        if self._root is None:
            self._run_as = self._os_user()
            self._root = self._prepare_root()
            if not (self.data_dir / "PG_VERSION").exists():  # else a cluster left in base_dir: reuse it
                self._init_cluster()
        self._register_cleanup()
        if self.port is not None:
            self._start_on(self.port)
            return self
        last_error: PostgresUnavailable | None = None
        for _ in range(5):  # the free port can be taken between choosing and binding it
            port = free_port()
            try:
                self._start_on(port)
            except PostgresUnavailable as exc:
                last_error = exc
                continue
            self.port = port
            return self
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """Stop at once (``-m immediate``: no checkpoint, the data is throwaway). Idempotent."""
        if self._root is None or self._pg_ctl is None or not self.data_dir.exists():
            return
        if self.is_running():
            self._run(
                [str(self._pg_ctl), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "30"],
                check=False,
            )

    def cleanup(self) -> None:
        """Stop, end the watchdog, and delete a directory we created outside ``base_dir``."""
        self.stop()
        if self._watchdog is not None:
            with contextlib.suppress(OSError):
                assert self._watchdog.stdin is not None
                self._watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=10)
            self._watchdog = None
        if self._owns_root and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def is_running(self) -> bool:
        if self._root is None or self._pg_ctl is None or not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run([str(self._pg_ctl), "status", "-D", str(self.data_dir)], check=False)
        return result.returncode == 0

    # -- databases ------------------------------------------------------------------------

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL using psycopg 3 (the driver the bulk COPY path is written for)."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self._require_port()}/{dbname}"

    def dagster_pg_url(self, dbname: str) -> str:
        """``postgres_url`` for dagster-postgres. The driver is named: SQLAlchemy 2.1 maps a bare
        ``postgresql://`` to psycopg 3, on which dagster-postgres's ``NOTIFY run_events, $1``
        is a syntax error; it is written for psycopg2."""
        return f"postgresql+psycopg2://{SUPERUSER}@{HOST}:{self._require_port()}/{dbname}"

    def dsn(self, dbname: str) -> str:
        """Plain libpq URL, for ``psycopg.connect`` / ``psql``."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self._require_port()}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (random name unless given) and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        dbname = name or f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.url(dbname)

    def _dsn(self, dbname: str) -> str:
        return f"host={HOST} port={self._require_port()} user={SUPERUSER} dbname={dbname} connect_timeout=10"

    def _require_port(self) -> int:
        if self.port is None:
            raise RuntimeError("PostgresServer has not been started")
        return self.port

    # -- internals ------------------------------------------------------------------------

    def _os_user(self) -> str | None:
        """The account to run initdb/pg_ctl as: ourselves unless we are root."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", FALLBACK_OS_USER):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise PostgresUnavailable(
                f"running as root, no 'postgres' account, and useradd failed: {created.stderr.strip()}"
            )
        return FALLBACK_OS_USER

    def _prepare_root(self) -> Path:
        """A directory the server account can write, with a socket path short enough for AF_UNIX."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        root = self.base_dir
        if len(str(root / "sock")) > _MAX_SOCKET_DIR or not self._usable_by_server(root):
            # pytest's root-owned 0700 temp tree is not traversable by the postgres account.
            root = Path(tempfile.mkdtemp(prefix="evp-pg-"))
            self._owns_root = True
        for sub in (root / "sock",):
            sub.mkdir(exist_ok=True)
        if self._run_as is not None:
            account = pwd.getpwnam(self._run_as)
            for path in (root, root / "sock"):
                os.chown(path, account.pw_uid, account.pw_gid)
            root.chmod(0o700)
        return root

    def _usable_by_server(self, root: Path) -> bool:
        if self._run_as is None:
            return True
        account = pwd.getpwnam(self._run_as)
        os.chown(root, account.pw_uid, account.pw_gid)
        probe = self._run(["test", "-w", str(root), "-a", "-x", str(root)], check=False)
        return probe.returncode == 0

    def _init_cluster(self) -> None:
        assert self._initdb is not None
        result = self._run(
            [
                str(self._initdb),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        settings = {
            "listen_addresses": f"'{HOST}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "full_page_writes": "off",
            # Concurrent-upload tests, dagster-postgres pools and a daemon share one server.
            "max_connections": "200",
            "shared_buffers": "256MB",
            "max_wal_size": "4GB",
            "log_min_messages": "warning",
        }
        conf = "\n# event_pipeline test server\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        # Appended as the server account: the file is theirs and mode 0600.
        self._run(["sh", "-c", f"cat >> {shlex.quote(str(self.data_dir / 'postgresql.conf'))}"], input=conf)

    def _start_on(self, port: int) -> None:
        assert self._pg_ctl is not None
        result = self._run(
            [
                str(self._pg_ctl),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                "60",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"pg_ctl start on port {port} failed: {result.stderr.strip()}\n{self._log_tail()}"
            )
        self.port = port
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"server did not accept connections: {exc}") from None
                time.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no server log)"

    def _register_cleanup(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.cleanup)
            self._atexit_registered = True
        if self._watchdog is None:
            assert self._pg_ctl is not None
            stop = self._as_server([str(self._pg_ctl), "stop", "-D", str(self.data_dir), "-m", "immediate"])
            # Own session: a Ctrl-C to the test run must not take the watchdog down first.
            # It also removes a directory we made outside base_dir, which nobody else would.
            leftover = str(self._root) if self._owns_root else ""
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, leftover, *stop],
                stdin=subprocess.PIPE,
                start_new_session=True,
            )

    def _as_server(self, argv: Sequence[str]) -> list[str]:
        if self._run_as is None:
            return list(argv)
        if shutil.which("runuser"):
            return ["runuser", "-u", self._run_as, "--", *argv]
        return ["su", self._run_as, "-s", "/bin/sh", "-c", shlex.join(argv)]

    def _run(
        self, argv: Sequence[str], *, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        # cwd: the server account may not be allowed into our working directory.
        result = subprocess.run(
            self._as_server(argv), capture_output=True, text=True, input=input, check=False, cwd="/"
        )
        if check and result.returncode != 0:
            raise PostgresUnavailable(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    # -- appended for the database-down tests ----------------------------------------------

    def shut_down(self) -> None:
        """Stop the way an administrator's restart does (``-m fast``): every session is told
        "terminating connection due to administrator command" and its open transaction is rolled
        back, where ``stop()`` is a crash. ``start()`` brings the same cluster back. Idempotent."""
        if self._pg_ctl is None or not self.is_running():
            return
        self._run([str(self._pg_ctl), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60"])
