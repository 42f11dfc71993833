"""`__all__` of the store and roles packages is exactly their public names (httpx style)."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import provider.roles
import provider.store


@pytest.mark.parametrize("package", [provider.store, provider.roles])
def test_all_lists_exactly_the_public_names(package: ModuleType) -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(package.__all__) == public
