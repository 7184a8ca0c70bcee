"""The benchmark runs end to end in its quick mode (no timing assertions: it reports, it does not gate)."""
import json
import shutil
import subprocess

from tests.conftest import PY, ROOT


def test_the_quick_benchmark_prints_its_table_and_saves_every_row(tmp_path):
    saved = tmp_path / "bench.json"
    done = subprocess.run([PY, "bench/run.py", "--quick", "--json", str(saved)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(saved.read_text())
    metrics = [row["metric"] for row in results["table"]]
    expected = ["/api/chat TTFB, streamed (ms)", "/v1/chat/completions 200-token stream (ms)",
                "/v1/messages TTFB, streamed (ms)", "/v1/responses 200-token stream (ms)",
                "proxy peak RSS, VmHWM (MB)",
                "/api/chat 1 MB conversation, non-streamed (ms)",
                "/v1/messages 10 KB conversation, non-streamed (ms)",
                "/v1/responses 100 KB conversation, non-streamed (ms)",
                "100 streams @20 tok/s: errors", "100 streams @20 tok/s: complete answers",
                "100 streams @20 tok/s: request-log rows, one each",
                "100 streams @20 tok/s: proxy RSS before | peak, VmHWM (MB)",
                "100 streams @20 tok/s: server CPU per token, user + system (us)"]
    if shutil.which("wrk"):
        expected += ["/api/chat non-streamed req/s @32", "/v1/chat/completions logging cost: req/s log off | log on"]
        assert all(r["errors"] == 0 for e in results["endpoints"].values() for r in e["wrk"].values())
    for metric in expected:
        assert metric in metrics
        assert metric in done.stdout  # the printed table
    counts = {"100 streams @20 tok/s: errors": 0, "100 streams @20 tok/s: complete answers": 100,
              "100 streams @20 tok/s: request-log rows, one each": 100}
    for row in results["table"]:
        if row["metric"] in counts:
            assert row["proxy"] == counts[row["metric"]], row
        else:
            assert row["proxy"] > 0, row
    assert any(row["metric"].startswith("100 streams @20 tok/s: /api/version p99") for row in results["table"])
    assert results["memory"]["requests"] >= 500
