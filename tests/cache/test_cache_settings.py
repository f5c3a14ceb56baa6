import pydantic
import pytest

from cache.base import describe, make_cache
from cache.memory import MemoryCache
from cache.redis import RedisCache
from cache.settings import CacheSettings, ModelCacheSettings, redact_url
from wattgate.errors import BadRequest


def test_no_url_gives_the_in_process_cache():
    cache = make_cache(CacheSettings(memory_max_bytes=8 << 20))
    assert isinstance(cache, MemoryCache) and cache.max_bytes == 8 << 20
    assert describe(CacheSettings(memory_max_bytes=64 << 20, memory_max_entries=None)) == "in-process LRU, 64 MiB"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@cache.example:6380/1", "unix:///tmp/redis.sock"])
def test_redis_urls_give_the_redis_cache(url):
    assert isinstance(make_cache(CacheSettings(url=url)), RedisCache)


def test_unknown_scheme_fails_loudly_in_settings_and_in_the_factory():
    with pytest.raises(pydantic.ValidationError, match="memcached"):
        CacheSettings(url="memcached://127.0.0.1:11211")
    with pytest.raises(BadRequest, match="unknown scheme 'http'"):
        make_cache(CacheSettings.model_construct(url="http://127.0.0.1:6379"))


def test_describe_names_the_backend_without_the_password():
    assert describe(CacheSettings(url="redis://127.0.0.1:6379/0")) == "redis at redis://127.0.0.1:6379/0"
    line = describe(CacheSettings(url="rediss://user:s3cret@cache.example:6380/2"))
    assert line == "redis at rediss://user:***@cache.example:6380/2"
    assert "s3cret" not in redact_url("redis://127.0.0.1:6379/0?password=s3cret&db=1")
    assert describe(CacheSettings(enabled=False, url="redis://127.0.0.1:6379/0")) == "cache off"


def test_per_model_settings_fill_in_defaults():
    s = CacheSettings(
        default_ttl_s=60,
        max_value_bytes=1000,
        per_model={"digits": ModelCacheSettings(ttl_s=5), "llm": ModelCacheSettings(enabled=False)},
    )
    assert s.for_model("digits") == ModelCacheSettings(enabled=True, ttl_s=5, max_value_bytes=1000)
    assert s.for_model("llm").enabled is False
    assert s.for_model("other") == ModelCacheSettings(enabled=True, ttl_s=60, max_value_bytes=1000)
    assert CacheSettings(enabled=False).for_model("digits").enabled is False


def test_settings_validate_values():
    with pytest.raises(pydantic.ValidationError):
        CacheSettings(default_ttl_s=0)
    with pytest.raises(pydantic.ValidationError):
        CacheSettings(breaker_backoff_s=5, breaker_max_backoff_s=1)
    with pytest.raises(pydantic.ValidationError):
        CacheSettings(per_model={"m": {"ttl_s": -1}})
    with pytest.raises(pydantic.ValidationError):
        CacheSettings(unknown_field=1)
    assert CacheSettings(url="").url is None
