"""Every API endpoint the proxy serves, in one list: the access, fuzz and fault tests enumerate it.

Add a new endpoint here (method, path, a body that succeeds against the fake LM Studio) and it is
covered by the API-key tests and fuzzed. GET endpoints have no body.
"""

API_ENDPOINTS = [
    ("GET", "/api/tags", None),
    ("POST", "/api/show", {"model": "coder"}),
    ("POST", "/api/chat", {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/api/generate", {"model": "coder", "prompt": "hi"}),
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/completions", {"model": "coder", "prompt": "hi"}),
    ("GET", "/api/ps", None),
    ("POST", "/api/embed", {"model": "embedder", "input": "hi"}),
    ("POST", "/api/embeddings", {"model": "embedder", "prompt": "hi"}),
    ("POST", "/v1/embeddings", {"model": "embedder", "input": "hi"}),
    ("GET", "/v1/models/coder", None),
    ("POST", "/api/pull", {"model": "coder"}),
    ("GET", "/metrics", None),
    ("POST", "/v1/messages", {"model": "coder", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/responses", {"model": "coder", "input": "hi"}),
]

# Public: no API key needed, even when one is set.
PUBLIC_PATHS = ["/", "/api/version", "/health"]

# One short chat request in each of the four chat dialects, streamed: the fault tests send them side by
# side. (path -> body; the end marker of a complete stream in STREAM_ENDS.)
DIALECT_CHATS = {
    "/api/chat": {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    "/v1/chat/completions": {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    "/v1/messages": {"model": "coder", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}],
                     "stream": True},
    "/v1/responses": {"model": "coder", "input": "hi", "stream": True},
}
STREAM_ENDS = {"/api/chat": b'"done":true', "/v1/chat/completions": b"[DONE]", "/v1/messages": b"message_stop",
               "/v1/responses": b"response.completed"}
