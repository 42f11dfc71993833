"""bench/scale.py compares us with the OpenPegasus figures of SPEC §5 as quoted and, on a host
running at another speed than on the day of those figures, scaled by our HTTP floor against the
bare asyncio floor quoted beside them."""

from __future__ import annotations

from bench.scale import machine_speed, verdict


def test_machine_speed_is_our_floor_over_the_quoted_floor() -> None:
    assert machine_speed(43_500.0) == 1.0
    assert machine_speed(10_875.0) == 0.25


def test_verdict_as_quoted_on_a_day_like_theirs() -> None:
    assert verdict(16_000.0, "GetInstance") == "14-15k/s: ahead (1.10x)"
    assert verdict(14_500.0, "GetInstance", 1.02) == "14-15k/s: level (1.00x)"
    assert verdict(9_000.0, "method") == "6-10k/s: level (1.12x)"


def test_verdict_on_a_slow_day_also_scales_to_its_speed() -> None:
    # A host at a quarter of its speed: 4,000 GetInstance/s is 16,000/s on a normal day.
    assert verdict(4_000.0, "GetInstance", 0.25) == (
        "14-15k/s: behind (0.28x); at today's speed ahead (1.10x)"
    )
    assert verdict(20.0, "enum1k", 0.5).endswith("at today's speed behind (0.47x)")


def test_median_run_is_the_run_of_median_rate() -> None:
    from bench.scale import Measured, median_run

    runs = [Measured(calls, 1.0, [], 0.1, 50.0) for calls in (300, 100, 200)]
    assert median_run(runs).calls == 200
    assert median_run(runs[:2]).calls == 300  # the upper middle one of an even number
