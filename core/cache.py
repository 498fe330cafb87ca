"""Django's Redis cache, with one `redis.Redis` client per connection pool instead of one per call.

`django.core.cache.backends.redis.RedisCacheClient.get_client` builds a new `redis.Redis` on every
cache call; redis-py fills a table of ~170 response callbacks in each constructor, which cost 29%
of a node heartbeat's CPU (bench/README.md, heartbeats.py). A `redis.Redis` is thread-safe and
holds no connection of its own (it borrows one from the pool per command), so one per pool is
enough. Behaviour, keys and serialization are Django's.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class ReusingRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class ReusingRedisCache(RedisCache):
    """`CACHES["default"]["BACKEND"] = "core.cache.ReusingRedisCache"`."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
