from __future__ import annotations

from collections.abc import Iterator

import pytest

from provider.store import Store
from tests.pg import postgres_cluster, postgres_url, store_url  # noqa: F401  (fixtures)
from tests.store._helpers import open_test_store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811
    store = open_test_store(store_url)
    yield store
    store.close()
