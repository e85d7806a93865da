"""``ecgk db``, ``ecgk keys`` and ``ecgk models`` through the real ``ecgk`` app (typer's CliRunner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from ecg_k.cli import app
from ecg_k.db.api_keys import verify_api_key
from ecg_k.db.migrate import current_revision, head_revision
from ecg_k.db.models import AuditEvent
from ecg_k.db.registry import get_champion
from ecg_k.db.session import session_scope

runner = CliRunner()
KEY = re.compile(r"^ecgk_[0-9a-f]{12}_[0-9a-f]{64}$", re.MULTILINE)


def test_db_upgrade_and_current(empty_db_url: str) -> None:
    result = runner.invoke(app, ["db", "current", "--url", empty_db_url])
    assert result.exit_code == 0, result.output
    assert "revision none" in result.output and "behind" in result.output
    for _ in range(2):  # idempotent
        result = runner.invoke(app, ["db", "upgrade", "--url", empty_db_url])
        assert result.exit_code == 0, result.output
        assert f"at revision {head_revision()} (head)" in result.output
    assert current_revision(empty_db_url) == head_revision()
    result = runner.invoke(app, ["db", "current", "--url", empty_db_url])
    assert result.exit_code == 0 and "up to date" in result.output


def test_keys_create_prints_a_working_key_once(db_url: str) -> None:
    arguments = ["keys", "create", "--role", "reviewer", "--name", "QA lead", "--url", db_url]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    (plaintext,) = KEY.findall(result.stdout)
    assert result.stdout.strip() == plaintext  # stdout holds only the key, for scripts
    assert "not shown again" in result.stderr
    with session_scope(db_url) as session:
        key = verify_api_key(session, plaintext)
        assert key is not None and key.role.value == "reviewer" and key.name == "QA lead"

    listing = runner.invoke(app, ["keys", "list", "--url", db_url])
    assert listing.exit_code == 0, listing.output
    assert key.prefix in listing.output and "reviewer" in listing.output
    assert plaintext.split("_")[2] not in listing.output

    revoked = runner.invoke(app, ["keys", "revoke", str(key.id), "--url", db_url])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    with session_scope(db_url) as session:
        assert verify_api_key(session, plaintext) is None


def test_bad_input_exits_2_with_a_clear_message(db_url: str) -> None:
    cases = [
        (["keys", "create", "--role", "superuser", "--url", db_url], "Invalid value for '--role'"),
        (["keys", "revoke", "12345", "--url", db_url], "no API key with id 12345"),
        (["db", "upgrade", "--url", "nosuchdb://x"], "error"),
        (["db", "upgrade", "--url", "not a url"], "error"),
    ]
    for arguments, message in cases:
        result = runner.invoke(app, arguments)
        assert result.exit_code == 2, (arguments, result.output)
        assert message in result.output and "Traceback" not in result.output
    missing_role = runner.invoke(app, ["keys", "create", "--url", db_url])
    assert missing_role.exit_code == 2


def test_keys_need_a_migrated_database(empty_db_url: str) -> None:
    result = runner.invoke(app, ["keys", "create", "--role", "client", "--url", empty_db_url])
    assert result.exit_code == 2
    assert f"is at revision none, not {head_revision()}: run `ecgk db upgrade`" in result.output


def test_unreachable_database_exits_1() -> None:
    url = "postgresql+psycopg://ecgk:s3cret@127.0.0.1:9/ecgk"  # nothing listens on the discard port
    result = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert result.exit_code == 1 and "database unavailable" in result.output
    assert "s3cret" not in result.output


def test_models_register_promote_list(db_url: str, card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    registered = runner.invoke(app, ["models", "register", str(card_path), "--promote", "--url", db_url])
    assert registered.exit_code == 0, registered.output
    assert f"{card['version']} registered as champion" in registered.output
    listing = runner.invoke(app, ["models", "list", "--url", db_url])
    assert listing.exit_code == 0
    assert listing.output.split("\t")[1:4] == [card["version"], "champion", card["onnx"]["sha256"]]
    for arguments, message in [
        (["models", "register", str(card_path)], "already registered"),
        (["models", "register", str(card_path.with_name("nope.json"))], "no model card at"),
        (["models", "promote", card["name"], card["version"]], "already the champion"),
        (["models", "promote", card["name"], "v0"], "is not registered"),
    ]:
        result = runner.invoke(app, [*arguments, "--url", db_url])
        assert result.exit_code == 2 and message in result.output, (arguments, result.output)
    with session_scope(db_url) as session:
        champion = get_champion(session)
        assert champion is not None and champion.version == card["version"]
        actions = list(session.scalars(sa.select(AuditEvent.action)
                                       .where(AuditEvent.resource.contains(card["version"]))))
    assert actions == ["model.register", "model.promote"]
