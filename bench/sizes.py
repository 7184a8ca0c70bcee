"""The size sweep: a non-streamed chat whose conversation is 20 messages totalling about 10 KB ... 8 MB,
through each dialect, against the same call made directly to the fake LM Studio.

Direct is the body the proxy sent upstream for that request (captured from the fake's recording), so
both sides make the fake do the same work and the difference is what the proxy adds: reading, parsing,
translating and re-serialising the body, and logging it. The last user message is short and the fake's
answer echoes only that, so the answer stays small and the sweep measures request handling.
"""
from __future__ import annotations

import statistics

from bench import probes
from bench.servers import ALIAS, Processes

UPSTREAM_PATH = "/v1/chat/completions"
SIZES = {"10 KB": 10_000, "100 KB": 100_000, "1 MB": 1_000_000, "8 MB": 8_000_000}
MESSAGES = 20  # a system message, then user and assistant turns, ending with a short user question
LAST_QUESTION = "Answer in one line."
ECHO = LAST_QUESTION.encode()  # in every dialect's answer: the fake replies "... You said: <question>"
TARGETS = ("direct", "log on")
# A line of the kind agents send (code with double quotes, newlines, a tab): JSON has to escape some of
# it. (Escaped quotes once made the request log's redaction quadratic in the capped body, over a second
# per request at 64 KB; adminui/rows.py now scans each string once.)
FILLER = 'def handler(request):\n\treturn {"status": "ok", "path": request.path}  # see notes\n'


def conversation(total_bytes: int) -> list[tuple[str, str]]:
    """(role, text) for MESSAGES messages whose texts total about `total_bytes`."""
    share = max(1, total_bytes // (MESSAGES - 1))
    text = (FILLER * (share // len(FILLER) + 1))[:share]
    roles = ["system"] + ["user" if i % 2 == 0 else "assistant" for i in range(MESSAGES - 2)]
    return [(role, text) for role in roles] + [("user", LAST_QUESTION)]


def client_body(path: str, turns: list[tuple[str, str]]) -> dict:
    """The conversation as a non-streamed request in the dialect of `path`."""
    if path == "/v1/responses":
        kinds = {"user": "input_text", "assistant": "output_text", "system": "input_text"}
        items = [{"type": "message", "role": "developer" if role == "system" else role,
                  "content": [{"type": kinds[role], "text": text}]} for role, text in turns]
        return {"model": ALIAS, "input": items, "stream": False}
    if path == "/v1/messages":
        (_, system), rest = turns[0], turns[1:]
        messages = [{"role": role, "content": [{"type": "text", "text": text}]} for role, text in rest]
        return {"model": ALIAS, "max_tokens": 1024, "system": system, "messages": messages, "stream": False}
    return {"model": ALIAS, "messages": [{"role": r, "content": t} for r, t in turns], "stream": False}


def raw_requests(procs: Processes, path: str, body: dict) -> tuple[dict[str, tuple], dict[str, bytes]]:
    """(target -> (address, raw request), target -> what a complete answer contains); the direct
    request is what the proxy sent upstream (a stream, when the proxy streams from LM Studio)."""
    proxy = procs.proxies["log on"]
    procs.fake.reset()
    address, raw = probes.http_request(proxy.url, path, body)
    _, answer = probes.exchange(address, raw)  # also warms the proxy up for this size
    check_answer(answer, ECHO, f"{proxy.url}{path}")
    upstream = procs.fake.requests(UPSTREAM_PATH)[-1]["json"]
    requests = {"log on": (address, raw),
                "direct": probes.http_request(procs.fake.url, UPSTREAM_PATH, upstream)}
    return requests, {"log on": ECHO, "direct": b"[DONE]" if upstream.get("stream") else ECHO}


def check_answer(data: bytes, expect: bytes, where: str):
    """A complete answer: status 200 and `expect` (the fake's echo of the question, or a stream's end)."""
    if probes.status_of(data) != 200 or expect not in data:
        raise RuntimeError(f"{where}: unexpected answer: {data[:300]!r} ... {data[-200:]!r}")


def measure_case(procs: Processes, path: str, size: int, samples: int) -> dict:
    """Median seconds of `samples` interleaved calls, proxy and direct, for one dialect and size."""
    body = client_body(path, conversation(size))
    requests, expect = raw_requests(procs, path, body)
    answer_bytes = {}

    def measure(target: str) -> float:
        elapsed, data = probes.exchange(*requests[target])
        check_answer(data, expect[target], f"{target} {path}")
        answer_bytes[target] = len(data)
        if target == TARGETS[-1]:
            procs.fake.reset()  # the fake records every body: keep its memory flat
        return elapsed

    runs = probes.interleaved(TARGETS, samples, measure)
    procs.fake.reset()
    return {"ms": {t: statistics.median(v) * 1000 for t, v in runs.items()},
            "samples_s": runs, "request_bytes": {t: len(r[1]) for t, r in requests.items()},
            "answer_bytes": answer_bytes}


def measure_sizes(procs: Processes, paths, sizes: dict[str, int], samples: int) -> dict:
    """{path: {size label: measure_case(...)}} for every dialect and size."""
    return {path: {label: measure_case(procs, path, size, samples) for label, size in sizes.items()}
            for path in paths}
