"""The database locked or unavailable: answers are 503 with Retry-After and OpenAI's error body,
never a 500 or a hang, and no usage row is lost (a stream that was running when the database went
away is recorded once it is back).

SQLite: another connection holds the write lock past `database_timeout_seconds`. PostgreSQL (real,
CODERAPI_TEST_POSTGRES_URL): the app reaches it through a TCP relay on loopback that the test cuts
(connections reset, new ones refused) and restores, as a network partition or a restart would."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading

import httpx
import openai
import pytest

from tests.api.conftest import ALIAS_ID, launch, make_account
from tests.integration.postgres import fresh_schema
from tests.integration.faults import Seen, new_id, post_chat, reconcile, rows_from_database, stream_chat

LONG_REPLY = "x" * 1500  # the scripted engine repeats it a token at a time: a stream of a few seconds


def _ask(platform, key: str) -> Seen:
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    return post_chat(platform.base, key, body, new_id("db"), timeout=60)


def _assert_unavailable(seen: Seen) -> None:
    assert seen.status == 503 and int(seen.retry_after) >= 1, seen
    assert set(seen.error) == {"message", "type", "param", "code"}, seen
    assert seen.error["type"] == "server_error" and seen.error["code"] == "database_unavailable", seen


async def _stream_across(platform, key: str, break_db, restore_db, during) -> tuple[Seen, list[Seen]]:
    """A long stream; once it runs, the database goes away and `during()` sends its requests."""
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "repeat: " + LONG_REPLY}],
            "max_tokens": 2000, "stream": True, "stream_options": {"include_usage": True}}
    running = Seen(new_id("stream"))
    async with httpx.AsyncClient(base_url=platform.base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        task = asyncio.create_task(stream_chat(client, body, running.request_id, seen=running))
        while running.chunks < 10:
            assert not task.done(), running
            await asyncio.sleep(0.01)
        break_db()
        try:
            refused = await asyncio.to_thread(during)
            await task
        finally:
            restore_db()
    return running, refused


def test_sqlite_locked_past_the_timeout_answers_503(tmp_path):
    with launch(tmp_path, database_timeout_seconds=0.5) as platform:
        account = make_account(platform)
        fresh = make_account(platform)  # its key has never been used: checking it writes last_used_at
        locker = sqlite3.connect(tmp_path / "coderapi.db", isolation_level=None)

        def lock() -> None:
            locker.execute("BEGIN IMMEDIATE")  # the write lock, held until rollback

        def during() -> list[Seen]:
            # The fresh key cannot be checked (503, not metered); the key in use may be admitted on
            # reads alone (200, its row written once the lock is gone) or refused (503, a row).
            return [_ask(platform, fresh.key), _ask(platform, fresh.key), _ask(platform, account.key)]

        running, locked = asyncio.run(
            _stream_across(platform, account.key, lock, lambda: locker.execute("ROLLBACK"), during))
        *refused, warm = locked

        # The stream that was running finished; its row was written once the lock was gone.
        assert running.done and running.error is None and running.completion_tokens == len(LONG_REPLY) + 1
        for seen in refused:
            _assert_unavailable(seen)
        if warm.status != 200:
            _assert_unavailable(warm)

        lock()
        try:
            with pytest.raises(openai.InternalServerError) as caught:  # the SDK's class for a 503
                platform.client(fresh.key).chat.completions.create(
                    model=ALIAS_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
            assert caught.value.status_code == 503
            assert caught.value.response.headers["retry-after"]
        finally:
            locker.execute("ROLLBACK")
        after = [_ask(platform, fresh.key), _ask(platform, account.key)]
        assert all(s.status == 200 for s in after), after
        reconcile(rows_from_database(platform.services.db), [running, *refused, warm, *after],
                  unmetered={s.request_id for s in refused})
        locker.close()


class TcpRelay:
    """A loopback relay to a real server: `cut()` resets every connection and refuses new ones,
    `restore()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        try:  # as below: wakes the thread blocked in accept, which close alone would not
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            try:  # shutdown wakes the pump blocked in recv (close alone would not end the connection)
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._serve()


@pytest.mark.postgres
def test_postgres_unreachable_answers_503(tmp_path):
    with fresh_schema("coderapi_faults") as schema:
        _postgres_unreachable(tmp_path, schema)


def _postgres_unreachable(tmp_path, schema) -> None:
    url = schema.url
    relay = TcpRelay((url.host or "127.0.0.1", url.port or 5432))
    relayed = url.set(host="127.0.0.1", port=relay.port)
    try:
        with launch(tmp_path, database_url=relayed.render_as_string(hide_password=False),
                    database_timeout_seconds=2) as platform:
            account = make_account(platform)
            before = _ask(platform, account.key)
            assert before.status == 200
            during = lambda: [_ask(platform, account.key) for _ in range(2)]  # noqa: E731
            running, refused = asyncio.run(_stream_across(platform, account.key, relay.cut, relay.restore, during))
            assert running.done and running.error is None and running.completion_tokens == len(LONG_REPLY) + 1
            for seen in refused:
                _assert_unavailable(seen)
            after = _ask(platform, account.key)
            assert after.status == 200
            # Every request reads the auth epoch before it trusts a cached key: with the database
            # away, those two were refused before their key could be checked, so they have no row.
            reconcile(rows_from_database(platform.services.db), [before, running, *refused, after],
                      unmetered={s.request_id for s in refused})
    finally:
        relay.cut()
