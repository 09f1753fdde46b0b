"""The operator CLI (users, keys, credits), driven through typer's CliRunner on a temp SQLite file."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from typer.testing import CliRunner

from coderapi.cli_accounts import credits_app, keys_app, users_app
from coderapi.services import keygen
from coderapi.services.accounts import AccountService
from coderapi.store.database import Database

runner = CliRunner()


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'data' / 'cli.db'}"


def invoke(app, *args, url=None, input=None, env=None):
    extra = ["--database-url", url] if url else []
    return runner.invoke(app, [*args, *extra], input=input, env=env)


def make_user(url, email="dev@example.com", *flags):
    result = invoke(users_app, "create", email, *flags, url=url, input="long enough\n")
    assert result.exit_code == 0, result.output
    return result


def make_key(url, email="dev@example.com", *flags) -> str:
    result = invoke(keys_app, "create", email, *flags, url=url)
    assert result.exit_code == 0, result.output
    return result.stdout.rstrip("\n").splitlines()[-1]


def service(url) -> AccountService:
    db = Database(url)
    return AccountService(db, starting_credit=0)


def test_users_create_admin(url):
    result = make_user(url, "Dev@Example.com", "--admin")
    assert "admin dev@example.com" in result.stdout
    user = asyncio.run(service(url).signups.verify_password("dev@example.com", "long enough"))
    assert user is not None and user.role == "admin"


def test_users_create_reads_the_password_from_stdin(url):
    result = invoke(users_app, "create", "dev@example.com", url=url, input="from stdin!\n")
    assert result.exit_code == 0, result.output
    assert asyncio.run(service(url).signups.verify_password("dev@example.com", "from stdin!")) is not None


def test_a_password_is_never_taken_from_the_command_line(url):
    """argv is visible to every user of the machine (ps, /proc/PID/cmdline)."""
    result = invoke(users_app, "create", "dev@example.com", "--password", "long enough", url=url)
    assert result.exit_code == 2 and "No such option" in result.output
    assert "--password" not in runner.invoke(users_app, ["create", "--help"]).output


def test_users_create_errors_exit_1_without_a_traceback(url):
    make_user(url)
    result = invoke(users_app, "create", "dev@example.com", url=url, input="long enough\n")
    assert result.exit_code == 1
    assert "already exists" in result.output and "Traceback" not in result.output
    short = invoke(users_app, "create", "new@example.com", url=url, input="short\n")
    assert short.exit_code == 1 and "at least 8" in short.output


def test_database_url_defaults_to_the_environment(tmp_path, url):
    result = invoke(users_app, "create", "env@example.com", env={"CODERAPI_DATABASE_URL": url},
                    input="long enough\n")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "cli.db").exists()


def test_users_list(url):
    make_user(url)
    result = invoke(users_app, "list", url=url)
    assert result.exit_code == 0 and "dev@example.com" in result.stdout


def test_keys_create_prints_the_secret_alone_on_the_last_line(url):
    make_user(url)
    secret = make_key(url, "dev@example.com", "--name", "laptop")
    assert keygen.is_well_formed(secret)
    principal = asyncio.run(service(url).keys.authenticate_key(secret))
    assert principal.key_kind == "inference" and principal.email == "dev@example.com"
    management = make_key(url, "dev@example.com", "--management")
    assert asyncio.run(service(url).keys.authenticate_key(management)).key_kind == "management"


def test_keys_create_for_an_unknown_user(url):
    result = invoke(keys_app, "create", "nobody@example.com", url=url)
    assert result.exit_code == 1 and "No user" in result.output


def test_keys_list_shows_a_table(url):
    make_user(url)
    secret = make_key(url, "dev@example.com", "--name", "laptop")
    result = invoke(keys_app, "list", "dev@example.com", url=url)
    assert result.exit_code == 0, result.output
    for text in (keygen.prefix_of(secret), "laptop", "inference", "active", "never"):
        assert text in result.stdout
    assert secret not in result.stdout


@pytest.mark.parametrize("by_secret", [False, True])
def test_keys_disable_enable_delete(url, by_secret):
    make_user(url)
    secret = make_key(url)
    ref = secret if by_secret else keygen.prefix_of(secret)
    assert invoke(keys_app, "disable", ref, url=url).exit_code == 0
    assert "disabled" in invoke(keys_app, "list", "dev@example.com", url=url).stdout
    assert invoke(keys_app, "enable", ref, url=url).exit_code == 0
    assert "active" in invoke(keys_app, "list", "dev@example.com", url=url).stdout
    deleted = invoke(keys_app, "delete", ref, url=url)
    assert deleted.exit_code == 0 and "deleted" in deleted.stdout
    again = invoke(keys_app, "delete", ref, url=url)
    assert again.exit_code == 1 and "No such API key" in again.output


def test_keys_commands_reject_garbage(url):
    result = invoke(keys_app, "disable", "not-a-key!", url=url)
    assert result.exit_code == 1 and "prefix" in result.output


def test_credits_grant(url):
    make_user(url)
    result = invoke(credits_app, "grant", "dev@example.com", "12.5", "--reason", "welcome", url=url)
    assert result.exit_code == 0, result.output
    assert "17.500000" in result.stdout  # 5 USD starting credit + 12.5
    back = invoke(credits_app, "grant", "dev@example.com", "--database-url", url, "--", "-7.5")
    assert back.exit_code == 0 and "10.000000" in back.stdout, back.output
    bad = invoke(credits_app, "grant", "dev@example.com", "lots", url=url)
    assert bad.exit_code == 1 and "Not a valid USD amount" in bad.output


def test_bad_database_url_is_a_clear_error():
    result = invoke(users_app, "list", url="nosuchdb://x")
    assert result.exit_code == 1 and "database URL" in result.output and "Traceback" not in result.output


@pytest.fixture
def config_file(tmp_path, url):
    """A config file naming the temp database, as `coderapi serve --config FILE` reads it."""
    path = tmp_path / "coderapi.json"
    path.write_text(json.dumps({"database_url": url, "starting_credit": 0}))
    return path


def test_every_account_command_takes_config(config_file, url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default SQLite file would land in ./data
    elsewhere = f"sqlite:///{tmp_path / 'env.db'}"  # the file wins over CODERAPI_DATABASE_URL
    env = {"CODERAPI_DATABASE_URL": elsewhere}
    cfg = ["--config", str(config_file)]
    created = runner.invoke(users_app, ["create", "dev@example.com", *cfg], input="long enough\n", env=env)
    assert created.exit_code == 0, created.output
    key = runner.invoke(keys_app, ["create", "dev@example.com", *cfg], env=env)
    assert key.exit_code == 0, key.output
    prefix = keygen.prefix_of(key.stdout.rstrip("\n").splitlines()[-1])
    for app_, args in [
        (users_app, ["list"]),
        (keys_app, ["list", "dev@example.com"]),
        (credits_app, ["grant", "dev@example.com", "2"]),
    ]:
        result = runner.invoke(app_, [*args, *cfg], env=env)
        assert result.exit_code == 0 and "dev@example.com" in result.stdout, (args, result.output)
    for action in ("disable", "enable", "delete"):
        result = runner.invoke(keys_app, [action, prefix, *cfg], env=env)
        assert result.exit_code == 0, (action, result.output)
    [user] = asyncio.run(service(url).users.list_users())
    assert user.email == "dev@example.com" and float(user.balance) == 2.0  # the file's starting_credit 0
    assert not (tmp_path / "env.db").exists() and not (tmp_path / "data" / "coderapi.db").exists()


def test_config_from_the_environment_and_database_url_flag_over_it(config_file, tmp_path):
    result = runner.invoke(users_app, ["create", "env@example.com"], input="long enough\n",
                           env={"CODERAPI_CONFIG": str(config_file)})
    assert result.exit_code == 0, result.output
    flag_url = f"sqlite:///{tmp_path / 'flag.db'}"
    result = invoke(users_app, "create", "flag@example.com", "--config", str(config_file), url=flag_url,
                    input="long enough\n")
    assert result.exit_code == 0, result.output
    assert [u.email for u in asyncio.run(service(flag_url).users.list_users())] == ["flag@example.com"]


def test_a_bad_config_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(users_app, ["list", "--config", str(bad)])
    assert result.exit_code == 1 and "not valid JSON" in result.output and "Traceback" not in result.output
    bad.write_text(json.dumps({"starting_credit": -1}))
    result = runner.invoke(users_app, ["list", "--config", str(bad)])
    assert result.exit_code == 1 and "starting_credit" in result.output
    missing = runner.invoke(users_app, ["list", "--config", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2


def test_users_create_refuses_control_and_invisible_characters(url):
    for email in ("q\x01@example.com", "dev@example.com\u200b", "\u202edev@example.com"):
        result = invoke(users_app, "create", email, url=url, input="long enough\n")
        assert result.exit_code == 1 and "Not a valid email address" in result.output, email
    assert invoke(users_app, "list", url=url).stdout.count("@") == 0


def _flat(table: str) -> str:
    """A rich table's text without its borders, padding and wrapping, to find a cell's text in."""
    return re.sub(r"[\s\u2500-\u257f]", "", table)


def test_lists_escape_what_rows_stored_before_the_checks_may_hold(url):
    """Names and emails were not checked before: a name with ESC sequences retitled and cleared the
    operator's terminal, a bidi override reordered the table. Printed escaped, never raw."""
    from coderapi.store.tables import ApiKey, User

    make_user(url)
    make_key(url, "dev@example.com", "--name", "plain")
    db = Database(url)
    with db.session() as session:
        session.query(ApiKey).update({ApiKey.name: "\x1b]0;owned\x07\x1b[2J[bold]x\u202e"})
        session.query(User).update({User.email: "dev@example.com\u200b"})
    db.dispose()
    wide = {"COLUMNS": "300"}  # no cell is cut short
    users = invoke(users_app, "list", url=url, env=wide)
    assert users.exit_code == 0 and "dev@example.com\\u200b" in _flat(users.stdout) and "\u200b" not in users.stdout
    with db.session() as session:
        session.query(User).update({User.email: "dev@example.com"})
    db.dispose()
    keys = invoke(keys_app, "list", "dev@example.com", url=url, env=wide)
    assert keys.exit_code == 0, keys.output
    assert "\x1b" not in keys.stdout and "\x07" not in keys.stdout and "\u202e" not in keys.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J[bold]x\\u202e" in _flat(keys.stdout)
