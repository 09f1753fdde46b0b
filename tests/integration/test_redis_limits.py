"""The Redis limiter against a real redis-server: atomic batches, shared state, the app's 429."""

from __future__ import annotations

import asyncio
import os
import uuid

import openai
import pytest

from coderapi.errors import RateLimited, ServiceUnavailable
from coderapi.limits import RateLimits
from coderapi.limits.bucket import Take
from coderapi.limits.redis_limiter import RedisLimiter
from tests.conftest import require_or_skip
from tests.servers import free_port

pytestmark = pytest.mark.redis
REDIS_URL = os.environ.get("CODERAPI_TEST_REDIS_URL", "")


def _reachable(url: str) -> bool:
    if not url:
        return False
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
async def limiter():
    require_or_skip(_reachable(REDIS_URL), "CODERAPI_TEST_REDIS_URL is not set or Redis is not reachable")
    made = RedisLimiter(REDIS_URL, namespace=f"test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


async def test_batches_are_all_or_nothing(limiter):
    a, b = Take("{1}:a", 3, 3, 0.001), Take("{1}:b", 1, 10, 0.001)
    assert (await limiter.take([a, b])).allowed
    refused = await limiter.take([a, b])
    assert not refused.allowed and refused.levels[0].short
    peek = await limiter.take([Take("{1}:b", 0, 10, 0.001)])
    assert peek.levels[0].tokens == pytest.approx(9, abs=0.01)


async def test_concurrent_takes_never_exceed_capacity(limiter):
    take = Take("{2}:requests", 1, 10, 0.001)
    outcomes = await asyncio.gather(*(limiter.take([take]) for _ in range(50)))
    assert sum(o.allowed for o in outcomes) == 10


async def test_replicas_share_buckets_and_keys_expire(limiter):
    other = RedisLimiter(REDIS_URL, namespace=limiter._namespace)
    try:
        take = Take("{3}:requests", 1, 2, 0.001)
        assert (await limiter.take([take])).allowed and (await other.take([take])).allowed
        assert not (await limiter.take([take])).allowed
        ttl = await other._client.pttl(limiter._namespace + take.key)
        assert 0 < ttl <= 2 / 0.001 * 1000 + 1000
    finally:
        await other.close()


async def test_debt_refund_and_refill(limiter):
    assert (await limiter.take([Take("{4}:t", 25, 10, 100.0, force=True)])).levels[0].tokens == pytest.approx(-15, abs=1)
    assert not (await limiter.take([Take("{4}:t", 10, 10, 100.0)])).allowed
    await asyncio.sleep(0.3)  # 100 tokens a second
    assert (await limiter.take([Take("{4}:t", 10, 10, 100.0)])).allowed
    refund = await limiter.take([Take("{4}:t", -100, 10, 100.0, force=True)])
    assert refund.levels[0].tokens == 10


async def test_rate_limits_policy_on_redis(limiter):
    limits = RateLimits(limiter, default_rpm=60, default_tpm=600)
    quota = limits.quota(None, None)
    reservation = await limits.reserve(5, quota, 500)
    assert reservation.headers["x-ratelimit-remaining-tokens"] == "100"
    with pytest.raises(RateLimited) as caught:
        await limits.reserve(5, quota, 200)
    assert int(caught.value.headers["retry-after"]) >= 10
    await limits.settle(reservation, 100)
    assert int((await limits.peek(5, quota))["x-ratelimit-remaining-tokens"]) >= 500


async def test_unreachable_redis_fails_open_on_local_buckets():
    down = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        outcome = await down.take([Take("{6}:requests", 1, 1, 1.0)])
        assert outcome.allowed and outcome.levels[0].tokens == 0  # taken from this process's bucket
        assert not (await down.take([Take("{6}:requests", 1, 1, 1.0)])).allowed
    finally:
        await down.close()


async def test_unreachable_redis_fails_closed():
    down = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", failure_mode="closed")
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            await down.take([Take("{7}:requests", 1, 1, 1.0)])
        assert caught.value.status_code == 503 and caught.value.headers["retry-after"]
    finally:
        await down.close()


def test_the_app_limits_requests_through_redis(tmp_path):
    require_or_skip(_reachable(REDIS_URL), "CODERAPI_TEST_REDIS_URL is not set or Redis is not reachable")
    import redis

    from tests.api.conftest import ALIAS_ID, launch, make_account

    client = redis.Redis.from_url(REDIS_URL)
    stale = list(client.scan_iter("coderapi:rl:*"))  # buckets of earlier runs (ids restart per database)
    if stale:
        client.delete(*stale)
    with launch(tmp_path, redis_url=REDIS_URL) as platform:
        account = make_account(platform)
        platform.run(platform.services.users.set_user_limits(account.user_id, rpm_limit=2, tpm_limit=None))
        sdk = platform.client(account.key)
        messages = [{"role": "user", "content": "Hi"}]
        for _ in range(2):
            sdk.chat.completions.create(model=ALIAS_ID, messages=messages)
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model=ALIAS_ID, messages=messages)
        assert caught.value.response.headers["x-ratelimit-limit-requests"] == "2"
        assert any(k.startswith(b"coderapi:rl:") for k in client.scan_iter("coderapi:rl:*"))
