"""Key secrets are shown once and kept nowhere: not in the database files, not in the logs."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

from tests.api.conftest import ALIAS_ID, launch

USER = [{"role": "user", "content": "Hi"}]


def test_no_secret_in_the_database_or_the_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []
    with launch(tmp_path) as platform:
        secrets += [platform.key, platform.management_key]
        api = platform.http(platform.management_key)
        for name in ("one", "two", "three"):
            secrets.append(api.post("/v1/keys", json={"name": name}).json()["data"]["key"])
        secrets.append(platform.run(platform.services.keys.create_key(1, kind="management"))[1])
        for secret in secrets[2:5]:
            client = platform.client(secret)
            client.chat.completions.create(model=ALIAS_ID, messages=USER)
            list(client.chat.completions.create(model=ALIAS_ID, messages=USER, stream=True))
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model=ALIAS_ID, messages=USER, temperature=7)
        with pytest.raises(openai.InternalServerError):  # an error that is logged with its traceback
            platform.client(secrets[2]).chat.completions.create(
                model=ALIAS_ID, messages=[{"role": "user", "content": "fail after 0"}])
        api.patch(f"/v1/keys/{secrets[3][4:12]}", json={"disabled": True})
        with pytest.raises(openai.PermissionDeniedError):
            platform.client(secrets[3]).chat.completions.create(model=ALIAS_ID, messages=USER)
        api.delete(f"/v1/keys/{secrets[4][4:12]}")
        httpx.get(platform.base + "/v2/logs", headers={"Authorization": f"Bearer {secrets[4]}"})  # a deleted key
        assert len(platform.wait_rows(1, 10)) >= 10
        listed = api.get("/v1/keys").text + api.get("/v2/logs").text + api.get("/v1/key").text
    assert len(secrets) == 6 and len(set(secrets)) == 6
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "coderapi.db" for p in files)
    stored = b"".join(p.read_bytes() for p in files)  # the database, its WAL and anything else written
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records) + caplog.text
    assert caplog.records  # the scan saw the logs (the 500 above was logged)
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret[4:].encode() not in stored  # not even without its marker
        assert secret not in logged and secret not in listed
