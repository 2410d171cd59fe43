"""Token buckets in Redis: one request's guard, its own bucket and one more value in a single round trip."""

from __future__ import annotations

import redis
from django.conf import settings
from django.test import SimpleTestCase

from security.ratelimit import RateLimit, gate, hit

GUARD = RateLimit("test-guard", 2, 60)
BUCKET = RateLimit("test-bucket", 3, 60)
NOW = 1_800_000_000.0


class BucketTests(SimpleTestCase):
    def setUp(self):
        self.redis = redis.Redis.from_url(settings.REDIS_URL)
        self.redis.flushdb()

    def test_a_bucket_refuses_once_empty_and_refills_at_its_rate(self):
        decisions = [hit(BUCKET, "k", now=NOW) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert decisions[3].retry_after == 20  # 3 tokens a minute: one every 20 s
        assert hit(BUCKET, "k", now=NOW + 20).allowed

    def test_looking_takes_nothing(self):
        for _ in range(5):
            assert hit(BUCKET, "k", now=NOW, cost=0).allowed
        assert hit(BUCKET, "k", now=NOW).remaining == 2


class GateTests(SimpleTestCase):
    def setUp(self):
        self.redis = redis.Redis.from_url(settings.REDIS_URL)
        self.redis.flushdb()

    def test_it_takes_from_the_bucket_and_reads_the_value(self):
        self.redis.set("test:epoch", b"e1")
        checked = gate((GUARD, "1.2.3.4"), (BUCKET, "k"), now=NOW, read="test:epoch")
        assert checked.looked.allowed and checked.looked.remaining == 2  # looked at, not taken
        assert checked.taken is not None and checked.taken.allowed and checked.taken.remaining == 2
        assert checked.value == b"e1"
        assert hit(BUCKET, "k", now=NOW, cost=0).remaining == 2

    def test_an_unset_value_reads_as_none_and_no_bucket_means_none_taken(self):
        checked = gate((GUARD, "1.2.3.4"), None, now=NOW, read="test:missing")
        assert checked.looked.allowed and checked.taken is None and checked.value is None

    def test_a_closed_guard_leaves_the_bucket_untouched(self):
        hit(GUARD, "1.2.3.4", now=NOW, cost=2)
        checked = gate((GUARD, "1.2.3.4"), (BUCKET, "k"), now=NOW, read="test:epoch")
        assert not checked.looked.allowed and checked.looked.retry_after == 30
        assert checked.taken is None
        assert hit(BUCKET, "k", now=NOW, cost=0).remaining == 3

    def test_an_empty_bucket_is_refused_with_its_retry_time(self):
        for _ in range(3):
            assert gate((GUARD, "a"), (BUCKET, "k"), now=NOW, read="test:epoch").taken.allowed
        refused = gate((GUARD, "a"), (BUCKET, "k"), now=NOW, read="test:epoch").taken
        assert not refused.allowed and refused.retry_after == 20 and refused.remaining == 0
