"""Usage reports and key spend run on report threads of their own (settings `report_threads`,
`report_queue`, `report_queue_per_user`): a flood of slow reports (an account with millions of
usage rows: seconds each) waits there, a user's share at a time, and never holds the threads
every request's database work runs on."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import SERVED_ID, launch, make_account

USERS = 20  # × 2 reports each: more than the default executor's threads (at most 32)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with launch(tmp_path_factory.mktemp("reports"), report_threads=1, report_queue=2 * USERS, report_queue_per_user=2) as running:
        yield running


def _get(platform, path: str, key: str) -> httpx.Response:
    return httpx.get(platform.base + path, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_slow_reports_wait_on_their_own_threads(platform):
    reports = platform.services.reports
    accounts = [make_account(platform) for _ in range(USERS)]
    gate = threading.Event()
    original, original_filter = reports._totals, reports._filter
    asked = []

    def slow_totals(f):  # an account whose report scans millions of rows
        gate.wait(30)
        return original(f)

    async def counted_filter(*args, **kwargs):  # each report passes here before its query is handed off
        asked.append(1)
        return await original_filter(*args, **kwargs)

    reports._totals, reports._filter = slow_totals, counted_filter
    try:
        with ThreadPoolExecutor(2 * USERS) as clients:
            floods = [
                clients.submit(_get, platform, "/v2/usage?period=1d", accounts[i // 2].management_key)
                for i in range(2 * USERS)
            ]
            deadline = time.monotonic() + 20
            while len(asked) < 2 * USERS:
                assert time.monotonic() < deadline, "the reports did not all arrive"
                time.sleep(0.02)
            time.sleep(0.2)  # handed to their threads

            third = _get(platform, "/v2/usage?period=1d", accounts[0].management_key)
            assert third.status_code == 429 and third.json()["error"]["code"] == "concurrency_limit_exceeded"
            assert _get(platform, "/v1/key", accounts[0].key).status_code == 429  # key spend is a report too

            # Meanwhile a key never seen before (its lookup is database work) is served at once.
            fresh = make_account(platform)
            answer = httpx.post(
                platform.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {fresh.key}"},
                json={"model": SERVED_ID, "messages": [{"role": "user", "content": "Hi"}]}, timeout=10,
            )
            assert answer.status_code == 200, answer.text
            assert all(not f.done() for f in floods)  # the reports are still held

            gate.set()
            assert [f.result().status_code for f in floods] == [200] * (2 * USERS)
    finally:
        gate.set()
        reports._totals, reports._filter = original, original_filter
    assert _get(platform, "/v1/key", accounts[0].key).status_code == 200


def test_a_dashboard_page_shows_busy_reports_as_a_page(tmp_path):
    """A page whose report is refused (the user's share taken) is an HTML page with the reason and
    Retry-After; the API's routes answer the same refusal as JSON."""
    from tests.api.dashboard_site import open_site

    with open_site(tmp_path, report_threads=1, report_queue=4, report_queue_per_user=1) as site:
        browser = site.user("busy@example.com")
        reports = site.services.reports
        gate, original = threading.Event(), reports._series
        reports._series = lambda *args: (gate.wait(30), original(*args))[1]
        try:
            with ThreadPoolExecutor(1) as tab:
                first = tab.submit(browser.get, "/usage")  # holds the user's one report place
                deadline = time.monotonic() + 10
                while reports._pool.pending < 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                second = browser.get("/usage")
                assert second.status_code == 429 and second.headers["retry-after"] == "1"
                assert second.headers["content-type"].startswith("text/html")
                assert "Too many at once" in second.text and "usage reports are being computed" in second.text
                gate.set()
                assert first.result().status_code == 200
        finally:
            gate.set()
            reports._series = original
