"""Sign-in throttling holds under concurrency: the check and the record are one step, so a burst
of guesses fired together gets no more tries than one fired in sequence."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.api.dashboard_site import ADMIN, open_site

LIMIT = 3
BURST = 12


async def _burst(base: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        page = await http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        cookie = {"cookie": f"cdr_pre={page.cookies['cdr_pre']}"}
        form = {"email": ADMIN, "password": "a wrong guess", "csrf_token": token}
        return await asyncio.gather(*(http.post("/login", data=form, headers=cookie) for _ in range(BURST)))


def test_a_burst_of_wrong_passwords_gets_only_the_allowed_tries(tmp_path):
    with open_site(tmp_path, login_max_failures_per_email=LIMIT) as site:
        answers = asyncio.run(_burst(site.base))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [401] * LIMIT + [429] * (BURST - LIMIT)
        assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)
