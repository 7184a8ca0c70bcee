"""Benchmark: `manage.py exportlogs` over 100k logged requests: wall time and peak memory.

Seeds a throwaway SQLite database with N agent-like requests in the four dialects (a system prompt, a
tool, a tool call and its result, an answer: about 2 KB of bodies a row), then runs the command as its
own process, as an operator would, and reports its wall time and peak RSS (the target: a minute).

    python bench/export.py [--rows 100000] [--format jsonl]
"""
import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOOL = {"type": "function", "function": {
    "name": "read_file", "description": "Read a file of the project",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}


def body(api: str, prompt: str) -> tuple[str, dict]:
    """(endpoint, a request of that dialect with one tool call answered)."""
    system, args, result = "You are a coding agent. " * 10, {"path": "src/main.py"}, "def main():\n    pass\n" * 20
    arguments = orjson.dumps(args).decode()
    if api == "ollama":
        return "/api/chat", {"model": "coder", "tools": [TOOL], "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": prompt},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "read_file", "arguments": args}}]},
            {"role": "tool", "tool_name": "read_file", "content": result}]}
    if api == "openai":
        return "/v1/chat/completions", {"model": "coder", "tools": [TOOL], "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": prompt},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "read_file", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "c1", "content": result}]}
    if api == "responses":
        return "/v1/responses", {"model": "coder", "instructions": system, "tools": [
            {"type": "function", **TOOL["function"]}], "input": [
            {"role": "user", "content": prompt},
            {"type": "function_call", "call_id": "c1", "name": "read_file", "arguments": arguments},
            {"type": "function_call_output", "call_id": "c1", "output": result}]}
    return "/v1/messages", {"model": "coder", "max_tokens": 4096, "system": system, "tools": [
        {"name": "read_file", "input_schema": TOOL["function"]["parameters"]}], "messages": [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "read_file", "input": args}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": result}]}]}


def seed(n: int):
    from adminui.models import RequestLog

    rng, now, batch = random.Random(42), datetime.now(timezone.utc), []
    for i in range(n):
        api = ("ollama", "openai", "responses", "anthropic")[i % 4]
        prompt = " ".join(rng.choice(["fix", "the", "bug", "in", "main"]) for _ in range(30))
        endpoint, request = body(api, prompt)
        batch.append(RequestLog(
            request_id=f"{i:032x}", started_at=now - timedelta(seconds=i * 6), api=api, endpoint=endpoint,
            requested_model="coder", alias="coder", upstream_model="qwen2.5-7b-instruct", status=200,
            outcome="ok", duration_ms=rng.uniform(200, 9000), ttft_ms=rng.uniform(50, 900),
            prompt_tokens=rng.randint(200, 4000), completion_tokens=rng.randint(5, 900),
            tokens_per_second=rng.uniform(10, 90), request_body=orjson.dumps(request).decode(),
            response_text="The bug is in main: it does nothing. " * 8))
        if len(batch) == 5000:
            RequestLog.objects.bulk_create(batch)
            batch = []
    RequestLog.objects.bulk_create(batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3", "REQUEST_LOG": "false",
               "DJANGO_SETTINGS_MODULE": "shimsite.settings"}
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        start = time.perf_counter()
        seed(args.rows)
        print(f"seeded {args.rows} rows in {time.perf_counter() - start:.1f} s "
              f"({os.path.getsize(f'{tmp}/db.sqlite3') / 1e6:.0f} MB)")
        out = Path(tmp) / f"export.{args.format}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "manage.py", "exportlogs", "--format", args.format, "--out", str(out)],
                       cwd=ROOT, env=env, check=True)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        lines = sum(1 for _ in out.open("rb"))
        print(f"exportlogs --format {args.format}: {lines} lines ({out.stat().st_size / 1e6:.0f} MB) in "
              f"{seconds:.1f} s ({args.rows / seconds:,.0f} rows/s), peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
