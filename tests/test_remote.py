"""``w2s_ray.remote.is_remote``: the one local-or-remote test the cache, storage and tracking share."""

import pytest

from w2s_ray import remote
from w2s_ray.pipeline import cache
from w2s_ray.search import storage
from w2s_ray.tracking import client


@pytest.mark.parametrize("uri,expected", [
    ("s3://bucket/x", True), ("gs://b", True), ("file:///tmp/x", False), ("/tmp/x", False), ("rel/dir", False),
])
def test_is_remote(uri, expected):
    assert remote.is_remote(uri) is expected


def test_one_helper_everywhere():
    assert storage.is_remote is cache.is_remote is client.is_remote is remote.is_remote
