"""Prediction cache: keys, backends (Redis, in-process LRU) and request coalescing."""

from cache.avoided import AvoidedEnergy, EnergyEstimate
from cache.base import PredictionCache, describe, make_cache
from cache.keys import cache_key
from cache.service import CacheOutcome, PredictionCacheService
from cache.settings import CacheSettings, ModelCacheSettings
from cache.values import decode_outputs, encode_outputs

__all__ = [
    "AvoidedEnergy",
    "CacheOutcome",
    "CacheSettings",
    "EnergyEstimate",
    "ModelCacheSettings",
    "PredictionCache",
    "PredictionCacheService",
    "cache_key",
    "decode_outputs",
    "describe",
    "encode_outputs",
    "make_cache",
]
