"""benchmarks/common.time_interleaved: every callable is timed in every round, in a rotating order."""

from benchmarks.common import time_interleaved


def test_rounds_call_every_function_in_a_rotating_order():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    result = time_interleaved(fns, runs=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # nobody always goes first
    assert {name: r["n"] for name, r in result.items()} == {"a": 3, "b": 3, "c": 3}
