"""LM Studio: the one HTTP client and its error mapping (`client`), reading its SSE streams (`events`),
its model lists (`catalog`), several servers with health and fallback (`backends`), fair use of the
upstream slots (`admission`), loading with load settings and idle TTLs (`instances`), JIT loads and
unloads for Ollama's empty requests (`loading`), and download jobs (`downloads`). May import
`routing.config`, `routing.security` and `routing.core`; knows nothing of the dialects."""
