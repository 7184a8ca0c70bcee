"""Benchmark: how long the history pages take to render with 100k logged requests.

Seeds a temporary SQLite database (WAL, as in production) with N rows spread over the last 30 days
(several aliases and API keys), then times each page through Django's test client (the full view +
template + middleware stack, without the network) and prints the median of several requests.

    python bench/history_page.py [--rows 100000] [--repeat 15]
"""
import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ALIASES = [("coder", "qwen2.5-7b-instruct"), ("tiny", "llama-3.2-1b-instruct"), ("thinker", "qwen3-4b-thinking"),
           ("", "mistral-7b-instruct-v0.3"), ("vision", "qwen2-vl-2b-instruct")]
# Whose key sent it: two people, the operator's API_KEY, and none (an open proxy).
KEYS, KEY_WEIGHTS = ["ann", "bob", "operator", ""], [40, 30, 20, 10]


def setup_django(db: Path):
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["REQUEST_LOG"] = "false"
    os.environ["DJANGO_SETTINGS_MODULE"] = "shimsite.settings"
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(n: int):
    from adminui.models import RequestLog

    rng = random.Random(42)
    now = datetime.now(timezone.utc)
    batch = []
    for i in range(n):
        alias, model = rng.choice(ALIASES)
        status = rng.choices([200, 404, 499, 502], [92, 3, 3, 2])[0]
        prompt = " ".join(rng.choice(["refactor", "this", "function", "explain", "code", "why"]) for _ in range(40))
        batch.append(RequestLog(
            request_id=f"{i:032x}", started_at=now - timedelta(seconds=i * 26 + rng.random()),
            api=rng.choice(["ollama", "openai"]), endpoint=rng.choice(["/api/chat", "/v1/chat/completions"]),
            client="127.0.0.1", user_agent="bench", key_name=rng.choices(KEYS, KEY_WEIGHTS)[0],
            requested_model=alias or model, alias=alias,
            upstream_model=model, stream=rng.random() < 0.7, status=status,
            outcome="ok" if status < 400 else ("client disconnected" if status == 499 else "error"),
            duration_ms=rng.uniform(200, 9000), ttft_ms=rng.uniform(50, 900), prompt_tokens=rng.randint(20, 4000),
            completion_tokens=rng.randint(5, 900), tokens_per_second=rng.uniform(10, 90), ttl=1800,
            request_body=f'{{"model": "{alias}", "messages": [{{"role": "user", "content": "{prompt}"}}]}}',
            response_text="Sure. " * 50))
        if len(batch) == 5000:
            RequestLog.objects.bulk_create(batch)
            batch = []
    RequestLog.objects.bulk_create(batch)


def median_ms(client, url: str, repeat: int) -> float:
    client.get(url)  # warm caches (templates, SQLite pages)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp) / "bench.sqlite3")
        started = time.perf_counter()
        seed(args.rows)
        print(f"seeded {args.rows} rows in {time.perf_counter() - started:.1f}s")
        from django.contrib.auth import get_user_model
        from django.test import Client

        from adminui.filters import cursor
        from adminui.models import RequestLog

        user = get_user_model().objects.create_superuser("bench", password="bench-pass-123")
        client = Client()
        client.force_login(user)
        deep = cursor(RequestLog.objects.order_by("-started_at", "-id")[args.rows // 2])
        pages = {
            "history, first page": "/history/",
            "history, alias filter": "/history/?alias=thinker",
            "history, errors only": "/history/?status=error",
            "history, page in the middle (cursor)": f"/history/?before={deep}",
            "history, last 24h + model": "/history/?last=24h&model=qwen2.5-7b-instruct",
            "history, search in bodies (scan)": "/history/?q=no-such-text-anywhere",
            "overview, last 24h": "/history/overview/?window=24h",
            "usage, last 30 days (every row)": "/history/usage/",
            "usage, last 30 days as CSV": "/history/usage/?format=csv",
            "usage, one key": "/history/usage/?key=ann",
            "usage, one key and alias": "/history/usage/?key=bob&alias=coder",
        }
        for name, url in pages.items():
            print(f"{name:40s} {median_ms(client, url, args.repeat):8.1f} ms (median of {args.repeat})")


if __name__ == "__main__":
    main()
