"""SSE events from LM Studio: parsed once per line, relayed in the batches they arrived in."""
import pytest

from routing.core.errors import UpstreamError
from routing.lmstudio.events import _DONE, EventStream, parse_sse_lines


async def arrived(*batches):
    for batch in batches:
        yield batch


async def collect(iterator):
    return [item async for item in iterator]


async def one_then_batches(stream: EventStream):
    return await anext(stream), await collect(stream.batches())


def run(coroutine):
    """Run a coroutine that never suspends (everything here is in memory) without an event loop,
    which the session's browser fixture may already be running on this thread."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended")


@pytest.mark.parametrize("lines, events, end", [
    ([b'data: {"a": 1}', b"", b'data: {"a": 2}'], [{"a": 1}, {"a": 2}], None),
    ([b'data: {"a": 1}', b"data: [DONE]", b'data: {"a": 2}'], [{"a": 1}], _DONE),
    ([b": keep-alive", b"event: x", b"data:"], [], None),
])
def test_it_parses_the_lines_of_one_read_into_events(lines, events, end):
    assert parse_sse_lines(lines) == (events, end)


def test_an_error_event_ends_the_batch_after_the_events_before_it():
    batch, end = parse_sse_lines([b'data: {"a": 1}', b'data: {"error": {"message": "boom"}}', b'data: {"a": 2}'])
    assert batch == [{"a": 1}]
    assert isinstance(end, UpstreamError) and "boom" in end.message


def test_it_yields_single_events_in_order_across_batches():
    stream = EventStream(arrived([{"a": 1}, {"a": 2}], [{"a": 3}]))
    assert run(collect(stream)) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_batches_start_with_the_events_left_over_from_single_reads():
    stream = EventStream(arrived([{"a": 1}, {"a": 2}], [{"a": 3}]))
    assert run(one_then_batches(stream)) == ({"a": 1}, [[{"a": 2}], [{"a": 3}]])
