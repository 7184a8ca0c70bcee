"""The one streaming relay: upstream events in, framed client chunks out, the exchange closed at the end.

Every streamed endpoint of every dialect goes through `relay`. It ends the stream properly in every
case: the dialect's end marker on success, the translator's failure chunks when the upstream fails
mid-stream, and a "client disconnected" record (with the upstream request closed at once) when the
client goes away.
"""
from __future__ import annotations

import logging
from typing import AsyncIterator

from routing.core.errors import ProxyError
from routing.core.exchange import Exchange
from routing.dialects.base import Answer, Dialect, Translator
from routing.lmstudio.events import EventStream

log = logging.getLogger(__name__)


def record_answer(exchange: Exchange, answer: Answer):
    exchange.response_text = answer.text
    exchange.thinking = "".join(answer.thinking)
    exchange.tool_calls = answer.ollama_tool_calls() if answer.tool_calls else []
    exchange.prompt_tokens = answer.prompt_tokens
    exchange.completion_tokens = answer.completion_tokens


async def relay(events: EventStream, translator: Translator, dialect: Dialect, exchange: Exchange,
                state) -> AsyncIterator[bytes]:
    """Translate and frame a stream (whose first events may already have been read: `started()`);
    `state` is the application's (its observers record the exchange, its metrics count the stream)."""
    frame, timing = dialect.frame, exchange.timing
    open_streams = state.metrics.open_streams
    open_streams.inc()
    with state.observers.recording(exchange):
        try:
            # One write per batch of events that arrived together: never waits for more, so no token
            # is delayed, but a burst costs one trip through Django and Daphne instead of one per token.
            async for batch in events.batches():
                chunks = [chunk for event in batch for chunk in translator.feed(event)]
                if chunks:
                    timing.mark_first_token()
                    yield b"".join(map(frame, chunks))
                if state.stopping is not None:  # a graceful stop's grace period is over
                    raise state.stopping
            timing.stop()
            yield b"".join(map(frame, translator.finish(timing))) + dialect.end
        except ProxyError as exc:
            exchange.fail(exc.status, exc.message)
            yield b"".join(map(frame, translator.failed(exc)))
        except Exception as exc:  # a bug must still end the stream with an error, never just stop
            log.exception("stream relay failed")
            failure = ProxyError(f"internal error while relaying the answer: {type(exc).__name__}")
            exchange.fail(failure.status, failure.message)
            yield b"".join(map(frame, translator.failed(failure)))
        finally:
            open_streams.dec()
            await events.aclose()  # closes the upstream response: LM Studio stops generating
            record_answer(exchange, translator.answer)
