"""The throwaway PostgreSQL server the tests run on: loopback only, restartable, cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from event_pipeline_tests.support import postgres
from event_pipeline_tests.support.postgres import PostgresServer, PostgresUnavailable


def test_missing_binaries_give_a_clear_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "find_pg_bin", lambda name: None)
    with pytest.raises(PostgresUnavailable, match=r"initdb and pg_ctl not found .*apt-get install"):
        PostgresServer(tmp_path).start()


def test_server_is_loopback_only_fast_and_survives_a_restart(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg").start()
    try:
        url = server.create_database("kept")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/kept"
        assert server.dagster_pg_url("kept").startswith("postgresql+psycopg2://")
        with psycopg.connect(server.dsn("kept"), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'fsync', 'full_page_writes', 'synchronous_commit')"
            ).fetchall()
            settings = {str(name): str(value) for name, value in rows}
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (42)")
        assert settings == {
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "on",
        }
        assert str(server.socket_dir) in (server.data_dir / "postgresql.conf").read_text()

        port = server.port
        server.stop()
        assert not server.is_running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn("kept"), connect_timeout=2)
        server.start()

        assert server.port == port
        with psycopg.connect(server.dsn("kept")) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    finally:
        server.cleanup()
    assert not server.is_running()


def test_a_killed_test_process_does_not_leave_the_server_running(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from event_pipeline_tests.support.postgres import PostgresServer
        server = PostgresServer(Path({str(tmp_path / "pg")!r})).start()
        print((server.data_dir / "postmaster.pid").read_text().splitlines()[0], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    postmaster = int(proc.stdout.strip())

    deadline = time.monotonic() + 30
    while _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(postmaster), "the watchdog should have stopped the orphaned server"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
