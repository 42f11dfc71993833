"""Pull enumeration contexts: every item exactly once, in order, whatever the page sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider.cim.operations import MAX_CONTEXTS_PER_USER, EnumerationContexts
from provider.errors import CIMClientError


@given(
    total=st.integers(min_value=0, max_value=60),
    pages=st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=40),
)
def test_batches_return_every_item_once_and_end_exactly_at_the_end(
    total: int, pages: list[int]
) -> None:
    contexts = EnumerationContexts(clock=lambda: 0.0)
    items = [f"item-{i}" for i in range(total)]
    cid = contexts.open(iter(items), "instances", "root/cimv2", "admin", 60)
    seen: list[str] = []
    ended = False
    for size in pages * 10:  # page sizes repeat until the sequence ends (0-pages included)
        ctx = contexts.take(cid, "instances", "root/cimv2", "admin")
        batch, ended = contexts.batch(cid, ctx, size)
        assert len(batch) <= size
        seen += batch
        if ended:
            break
        # Not ended: at least one item is still to come.
        assert len(seen) < total
    if ended:
        assert seen == items
        assert len(contexts) == 0  # the context closed itself
    else:
        assert seen == items[: len(seen)]
        assert len(contexts) == 1


def test_a_zero_page_keeps_the_context_open_until_items_are_pulled() -> None:
    contexts = EnumerationContexts(clock=lambda: 0.0)
    cid = contexts.open(iter(["a", "b"]), "paths", "root/cimv2", "admin", 60)
    ctx = contexts.take(cid, "paths", "root/cimv2", "admin")
    assert contexts.batch(cid, ctx, 0) == ([], False)
    assert contexts.batch(cid, ctx, 0) == ([], False)
    assert contexts.batch(cid, ctx, 1) == (["a"], False)
    assert contexts.batch(cid, ctx, 5) == (["b"], True)


def test_an_empty_enumeration_ends_on_the_first_batch_even_of_zero() -> None:
    contexts = EnumerationContexts(clock=lambda: 0.0)
    cid = contexts.open(iter([]), "instances", "root/cimv2", "admin", 60)
    ctx = contexts.take(cid, "instances", "root/cimv2", "admin")
    assert contexts.batch(cid, ctx, 0) == ([], True)
    assert len(contexts) == 0


def test_one_user_cannot_hold_every_enumeration_slot() -> None:
    """A read-only user opened 1,000 enumerations with an hour's timeout, and every other
    user's pull (pywbemcli's default) failed for that hour."""
    contexts = EnumerationContexts(clock=lambda: 0.0)
    for _ in range(MAX_CONTEXTS_PER_USER):
        contexts.open(iter(()), "instances", "root/cimv2", "ro", 3600)
    with pytest.raises(CIMClientError) as err:
        contexts.open(iter(()), "instances", "root/cimv2", "ro", 3600)
    assert "ro has 100 open enumerations" in err.value.description
    assert contexts.open(iter(()), "instances", "root/cimv2", "admin", 60)
