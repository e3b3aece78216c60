"""The signing-key commands and offline verification from the command line."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner, Result

from event_pipeline import settings
from event_pipeline.access.signed import SIGNING_KEY_ENV, TokenSigner, TokenVerifier
from event_pipeline.cli import main
from event_pipeline.store import tokens as store
from event_pipeline_tests.access import _support


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_gen_signing_key_prints_an_environment_line(var_home: settings.Paths) -> None:
    result = _run("gen-signing-key")
    assert result.exit_code == 0
    name, _, value = result.stdout.strip().partition("=")
    assert name == SIGNING_KEY_ENV and "\n" not in result.stdout.strip()
    signer = TokenSigner.from_text(value)
    assert signer.verifier.public_key_pem().strip() in result.stderr
    assert not var_home.secrets_env.exists(), "printing must not write anything"


def test_gen_write_then_export_and_verify_offline(
    var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    written = _run("gen-signing-key", "--write")
    assert written.exit_code == 0
    env_file = var_home.secrets_env
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    [line] = [entry for entry in env_file.read_text().splitlines() if entry.startswith(SIGNING_KEY_ENV)]
    signer = TokenSigner.from_text(line.partition("=")[2])
    assert written.stdout.strip() == signer.verifier.public_key_pem().strip()
    assert line.partition("=")[2] not in written.output, "--write keeps the private key off the terminal"

    again = _run("gen-signing-key", "--write")
    assert again.exit_code == 1 and "would invalidate" in again.output
    assert env_file.read_text().count(SIGNING_KEY_ENV) == 1

    # The CLI picks the key up from secrets.env (the local default) for export.
    pem = _run("export-public-key")
    assert pem.exit_code == 0 and pem.stdout.strip() == signer.verifier.public_key_pem().strip()
    b64 = _run("export-public-key", "--format", "base64")
    assert TokenVerifier.from_text(b64.stdout).public_key_pem() == signer.verifier.public_key_pem()

    db = _support.engine()
    event = _support.add_event(db)
    [pid] = _support.add_participants(db, event.id, 1)
    store.issue_missing_tokens(db, event.id)
    reissued = _run("reissue-token", str(pid), "--json")
    assert reissued.exit_code == 0
    signed = json.loads(reissued.stdout)["signed_token"]
    assert signed

    key_file = var_home.home / "device.pem"
    key_file.write_text(pem.stdout)
    # A device: the public key file and the scan, no token key, no signing key, no database.
    monkeypatch.delenv("EVENT_PIPELINE_TOKEN_KEY")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    env_file.unlink()
    ok = _run("verify-token", signed, "--public-key", str(key_file), "--event", event.slug, "--json")
    assert ok.exit_code == 0
    data = json.loads(ok.stdout)
    assert data["result"] == "valid" and data["offline"] is True and "not checked offline" in data["message"]
    wrong = _run("verify-token", signed, "--public-key", str(key_file), "--event", "other-2026", "--json")
    assert wrong.exit_code == 1 and json.loads(wrong.stdout)["result"] == "wrong_event"
    forged = _run("verify-token", signed[:-2] + "AA", "--public-key", str(key_file), "--json")
    assert forged.exit_code == 1 and json.loads(forged.stdout)["result"] == "unknown"


def test_export_without_a_key_says_how_to_make_one(var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    result = _run("export-public-key")
    assert result.exit_code == 1 and "gen-signing-key" in result.output


def test_a_malformed_signing_key_is_reported_without_echoing_it(
    var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, "c2VjcmV0LWJ1dC1ub3QtYS1rZXk=")
    result = _run("export-public-key")
    assert result.exit_code == 1 and "c2VjcmV0LWJ1dC1ub3QtYS1rZXk=" not in result.output
