from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ProviderHandle, provider_process


@pytest.fixture(scope="module")
def gm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderHandle]:
    """One real provider process shared by the tests of a module (reads mostly)."""
    workdir: Path = tmp_path_factory.mktemp("gm")
    with provider_process(workdir) as handle:
        yield handle
