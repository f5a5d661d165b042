"""The dynamic batcher: concurrent callers share forward passes, each gets its own rows, a full queue
refuses at once, and a model error reaches only the caller whose input caused it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from edurank.service.batcher import Batcher, Overloaded, tokens_of


class GatedModel:
    """A fake model: records each batch it runs and blocks its first one until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release, self.fail_on = threading.Event(), fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.release.wait(10)
        if self.fail_on in items:
            raise ValueError(f"cannot embed {self.fail_on}")
        return [item.upper() for item in items]


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def call_in_thread(batcher: Batcher[str], items: list[str], results: dict[str, object]) -> threading.Thread:
    def call() -> None:
        try:
            results[items[0]] = batcher(items)
        except Exception as err:  # kept for the assertions
            results[items[0]] = err

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_requests_queued_while_the_model_runs_share_the_next_forward_pass() -> None:
    model, results = GatedModel(), {}
    batcher = Batcher("test", model, max_items=8, max_wait_ms=0, max_queue=100)
    threads = [call_in_thread(batcher, ["a"], results)]
    wait_for(lambda: len(model.batches) == 1)  # the model is busy with "a"
    threads += [call_in_thread(batcher, [name, name + "2"], results) for name in ("b", "c", "d")]
    wait_for(lambda: batcher.queued == 6)
    model.release.set()
    for thread in threads:
        thread.join(10)
    assert len(model.batches) == 2 and sorted(model.batches[1]) == ["b", "b2", "c", "c2", "d", "d2"]
    assert results == {"a": ["A"], "b": ["B", "B2"], "c": ["C", "C2"], "d": ["D", "D2"]}


def test_a_batch_never_exceeds_max_items_unless_one_request_does() -> None:
    model, results = GatedModel(), {}
    batcher = Batcher("test", model, max_items=3, max_wait_ms=0, max_queue=100)
    threads = [call_in_thread(batcher, ["a"], results)]
    wait_for(lambda: len(model.batches) == 1)
    threads += [call_in_thread(batcher, [f"{n}{i}" for i in range(2)], results) for n in "bc"]
    wait_for(lambda: batcher.queued == 4)
    threads.append(call_in_thread(batcher, [f"e{i}" for i in range(5)], results))
    wait_for(lambda: batcher.queued == 9)
    model.release.set()
    for thread in threads:
        thread.join(10)
    assert [len(batch) for batch in model.batches] == [1, 2, 2, 5]  # b and c do not fit together in 3
    assert results["e0"] == [f"E{i}" for i in range(5)]


def test_long_texts_make_smaller_batches_under_the_token_budget() -> None:
    """Eight 20,000-character essays are not eight short queries: a batch holds at most `max_tokens` of
    them (estimated from characters), while short texts still fill `max_items`."""
    model, results = GatedModel(), {}
    batcher = Batcher("test", model, max_items=8, max_wait_ms=0, max_queue=100, tokens=tokens_of,
                      max_tokens=16384)
    threads = [call_in_thread(batcher, ["a"], results)]
    wait_for(lambda: len(model.batches) == 1)
    essays = [f"{i}" + "x" * 19_999 for i in range(8)]  # about 5,000 tokens each
    threads += [call_in_thread(batcher, [essay], results) for essay in essays]
    wait_for(lambda: batcher.queued == 8)
    threads += [call_in_thread(batcher, [f"q{i}"], results) for i in range(8)]
    wait_for(lambda: batcher.queued == 16)
    model.release.set()
    for thread in threads:
        thread.join(10)
    # 3 x 5,002 tokens fit in 16,384; the last two essays leave room for six short queries (8 items)
    assert [len(batch) for batch in model.batches[1:]] == [3, 3, 8, 2]
    assert all(results[essay] == [essay.upper()] for essay in essays)


def test_token_estimates_are_cut_where_the_model_cuts_texts() -> None:
    assert tokens_of("x" * 400) == 102 and tokens_of("x" * 400, "y" * 40, None) == 112
    assert tokens_of("x" * 20_000, limit=256) == 256 and tokens_of("") == 2


def test_a_request_over_the_token_budget_runs_alone() -> None:
    model, results = GatedModel(), {}
    batcher = Batcher("test", model, max_items=8, max_wait_ms=0, max_queue=100, tokens=tokens_of, max_tokens=100)
    threads = [call_in_thread(batcher, ["a"], results)]
    wait_for(lambda: len(model.batches) == 1)
    threads += [call_in_thread(batcher, [text], results) for text in ("b" * 1000, "c")]
    wait_for(lambda: batcher.queued == 2)
    model.release.set()
    for thread in threads:
        thread.join(10)
    assert model.batches[1:] == [["b" * 1000], ["c"]]


def test_a_full_queue_refuses_at_once_with_a_retry_delay() -> None:
    model, results = GatedModel(), {}
    batcher = Batcher("test", model, max_items=8, max_wait_ms=0, max_queue=3)
    first = call_in_thread(batcher, ["a"], results)
    wait_for(lambda: len(model.batches) == 1)
    queued = call_in_thread(batcher, ["b", "b2"], results)
    wait_for(lambda: batcher.queued == 2)
    started = time.monotonic()
    with pytest.raises(Overloaded) as refused:
        batcher(["c", "c2"])
    assert time.monotonic() - started < 1 and refused.value.retry_after >= 1 and "queue is full" in str(refused.value)
    model.release.set()
    for thread in (first, queued):
        thread.join(10)
    assert results == {"a": ["A"], "b": ["B", "B2"]}


def test_a_model_error_reaches_only_the_request_that_caused_it_and_the_worker_goes_on() -> None:
    model, results = GatedModel(fail_on="bad"), {}
    batcher = Batcher("test", model, max_items=8, max_wait_ms=0, max_queue=100)
    threads = [call_in_thread(batcher, ["a"], results)]
    wait_for(lambda: len(model.batches) == 1)
    threads += [call_in_thread(batcher, [name], results) for name in ("bad", "b")]
    wait_for(lambda: batcher.queued == 2)
    model.release.set()
    for thread in threads:
        thread.join(10)
    assert isinstance(results["bad"], ValueError) and results["b"] == ["B"]  # ["bad", "b"] failed, then each alone
    assert model.batches[1:] == [["bad", "b"], ["bad"], ["b"]]
    assert batcher(["c"]) == ["C"]


def test_a_lone_request_waits_at_most_max_wait() -> None:
    batcher = Batcher("test", lambda items: [i * 2 for i in items], max_items=8, max_wait_ms=50, max_queue=100)
    started = time.monotonic()
    assert batcher([1, 2]) == [2, 4]
    assert 0.04 < time.monotonic() - started < 2


def test_a_closed_batcher_answers_what_was_queued_then_runs_late_callers_alone() -> None:
    model, results = GatedModel(), {}
    batcher = Batcher("test", model, max_items=8, max_wait_ms=0, max_queue=100)
    threads = [call_in_thread(batcher, ["a"], results)]
    wait_for(lambda: len(model.batches) == 1)
    threads.append(call_in_thread(batcher, ["b"], results))
    wait_for(lambda: batcher.queued == 1)
    batcher.close()  # swapped out while "a" runs and "b" waits
    model.release.set()
    for thread in threads:
        thread.join(10)
    batcher.worker.join(10)
    assert not batcher.worker.is_alive() and results == {"a": ["A"], "b": ["B"]}
    assert batcher(["c"]) == ["C"] and model.batches[-1] == ["c"]  # no worker left: run in the caller's thread
