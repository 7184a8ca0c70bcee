"""The client dialects, one module each and all of one shape (see `base`): `ollama` (/api/chat,
/api/generate), `openai_chat` (/v1/chat/completions, /v1/completions), `responses` (/v1/responses) and
`anthropic` (/v1/messages), plus `embeddings` (Ollama's and OpenAI's) and Ollama's `logprobs`. Pure
translation: data in, data out. The pipeline and the relay never ask which one they serve. May import `routing.config` and
`routing.core`; knows nothing of LM Studio's client."""
