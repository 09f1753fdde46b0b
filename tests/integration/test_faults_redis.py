"""Redis goes away mid-run: a real redis-server on a free loopback port, killed and started again.

`redis_failure_mode="open"` (the default): requests keep being admitted under this process's own
in-memory limits (which still refuse beyond the key's limit), and the Redis buckets are used again
once Redis is back. `"closed"`: 503 with Retry-After while Redis is away, admitted again after.
Every answer leaves exactly one usage row that says what the client got."""

from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.api.conftest import ALIAS_ID, launch, make_account
from tests.conftest import require_or_skip
from tests.integration.faults import Seen, new_id, post_chat, reconcile, rows_from_database
from tests.servers import free_port

pytestmark = pytest.mark.redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@contextmanager
def redis_server(port: int, data_dir: Path):
    proc = subprocess.Popen(
        [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield client
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def redis_port(tmp_path):
    require_or_skip(Path(REDIS_SERVER).exists(), "redis-server is not installed")
    pytest.importorskip("redis")
    return free_port()


def _ask(platform, key: str) -> Seen:
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    return post_chat(platform.base, key, body, new_id("redis"))


def _limited_account(platform, rpm: int):
    account = make_account(platform)
    platform.run(platform.services.users.set_user_limits(account.user_id, rpm_limit=rpm, tpm_limit=None))
    return account


def test_fail_open_uses_local_limits_while_redis_is_away(tmp_path, redis_port):
    with launch(tmp_path / "app", redis_url=f"redis://127.0.0.1:{redis_port}/0") as platform:
        account = _limited_account(platform, rpm=3)
        seen = []
        with redis_server(redis_port, tmp_path) as redis_client:
            seen.append(_ask(platform, account.key))
            assert seen[-1].status == 200
            assert any(k.startswith(b"coderapi:rl:") for k in redis_client.scan_iter("coderapi:rl:*"))
        # Redis is gone: admitted under the in-process buckets, which start full and still limit.
        outage = [_ask(platform, account.key) for _ in range(4)]
        seen += outage
        assert [s.status for s in outage] == [200, 200, 200, 429]
        assert outage[-1].error["code"] == "rate_limit_exceeded" and outage[-1].retry_after
        # Back again (empty: no persistence): its buckets are used again.
        with redis_server(redis_port, tmp_path) as redis_client:
            back = _ask(platform, account.key)
            seen.append(back)
            assert back.status == 200
            assert any(k.startswith(b"coderapi:rl:") for k in redis_client.scan_iter("coderapi:rl:*"))
        rows = reconcile(rows_from_database(platform.services.db), seen)
        assert rows.status(outage[-1].request_id) == "refused"


def test_fail_closed_answers_503_while_redis_is_away(tmp_path, redis_port):
    url = f"redis://127.0.0.1:{redis_port}/0"
    with launch(tmp_path / "app", redis_url=url, redis_failure_mode="closed") as platform:
        account = make_account(platform)
        seen = []
        with redis_server(redis_port, tmp_path):
            seen.append(_ask(platform, account.key))
            assert seen[-1].status == 200
        down = [_ask(platform, account.key) for _ in range(2)]
        seen += down
        for s in down:
            assert s.status == 503 and int(s.retry_after) >= 1, s
            assert s.error["type"] == "server_error" and s.error["code"] == "rate_limiter_unavailable", s
            assert set(s.error) == {"message", "type", "param", "code"}
        with redis_server(redis_port, tmp_path):
            seen.append(_ask(platform, account.key))
            assert seen[-1].status == 200
        rows = reconcile(rows_from_database(platform.services.db), seen)
        assert all(rows.status(s.request_id) == "refused" for s in down)
