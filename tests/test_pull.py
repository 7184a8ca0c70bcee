"""`ollama pull`'s pure parts (name mapping, progress lines), the alias `download:` in routes.yaml and
the admin, and the download jobs against a respx LM Studio (an older one without /api/v1 too)."""
import io

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import AsyncClient

from routing.config.downloads import Download, parse_download
from routing.config.dump import dump_routes
from routing.config.loader import RouteTableError, load_routes
from routing.config.table import Route
from routing.core.errors import BadRequest, ModelNotFound
from routing.lmstudio.downloads import JobGone, RunningJobs
from routing.models import Alias as StoredAlias
from routing.proxy.pull import digest_of, name_download, progress_line, pull_target
from tests.upstream_stubs import MODELS

TABLE = load_routes(io.StringIO("""
defaults: {fallback: coder}
aliases:
  coder: qwen2.5-7b-instruct
  gemma: {model: google/gemma-3-1b, download: google/gemma-3-1b}
  small: {model: qwen3-0.6b, download: {hf: lmstudio-community/Qwen3-0.6B-GGUF, quantization: q8_0}}
  "gpt-4*": {model: openai/gpt-oss-20b}
  named: {model: "my model (local copy)"}
"""))
CATALOG = Download("google/gemma-3-1b")
SMALL = Download("lmstudio-community/Qwen3-0.6B-GGUF", hf=True, quantization="Q8_0")


def target(name: str, passthrough: bool = True):
    found = pull_target(name, TABLE.resolve(name, upstream_models={}), passthrough)
    return found.download, found.expect, found.alias


@pytest.mark.parametrize("name, download, expect, alias", [
    ("gemma", CATALOG, "google/gemma-3-1b", "gemma"),
    ("gemma:latest", CATALOG, "google/gemma-3-1b", "gemma"),
    ("small", SMALL, "qwen3-0.6b", "small"),
    ("coder", Download("qwen2.5-7b-instruct"), "qwen2.5-7b-instruct", "coder"),  # its model id, tried
    ("gpt-4o", Download("openai/gpt-oss-20b"), "openai/gpt-oss-20b", "gpt-4*"),  # a pattern's model
    ("google/gemma-3-1b", CATALOG, "google/gemma-3-1b", ""),  # passed through (the fallback is for chat)
    ("ibm/granite-4-micro:latest", Download("ibm/granite-4-micro"), "ibm/granite-4-micro", ""),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
     Download("bartowski/Llama-3.2-1B-Instruct-GGUF", hf=True, quantization="Q4_K_M"), None, ""),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:latest",
     Download("bartowski/Llama-3.2-1B-Instruct-GGUF", hf=True), None, ""),
    ("huggingface.co/user/repo:iq3_m", Download("user/repo", hf=True, quantization="IQ3_M"), None, ""),
    ("https://huggingface.co/user/repo", Download("user/repo", hf=True), None, ""),
])
def test_it_maps_a_pulled_name_to_what_lm_studio_downloads(name, download, expect, alias):
    assert target(name) == (download, expect, alias)


def test_without_passthrough_an_unknown_name_is_the_fallbacks_and_with_none_it_cannot_be_pulled():
    assert target("anything", passthrough=False) == (Download("qwen2.5-7b-instruct"), "qwen2.5-7b-instruct",
                                                     "coder")
    with pytest.raises(ModelNotFound) as info:
        pull_target("anything", None, passthrough=False)
    assert "add an alias with a `download:`" in info.value.message and info.value.status == 404


@pytest.mark.parametrize("name, error, words", [
    ("llama3:70b", ModelNotFound, "LM Studio downloads a catalog id such as google/gemma-3-1b"),
    ("../../etc", ModelNotFound, "got '../../etc'"),
    ("hf.co/just-a-user", ModelNotFound, "a Hugging Face repo is 'user/repo'"),
    ("http://evil.example/x", BadRequest, "a model name is not a URL"),
    ("named", ModelNotFound, "alias 'named' has no `download:` and its model id"),
])
def test_it_refuses_names_lm_studio_could_not_download_saying_what_to_do(name, error, words):
    with pytest.raises(error) as info:
        target(name) if name == "named" else name_download(name)
    assert words in info.value.message and f"cannot pull '{name}'" in info.value.message


def test_a_route_that_falls_back_while_names_pass_through_downloads_the_name_itself():
    route = Route("acme/new", "qwen2.5-7b-instruct", TABLE.aliases["coder"], via="fallback")
    found = pull_target("acme/new", route, passthrough=True)
    assert (found.download, found.expect, found.alias) == (Download("acme/new"), "acme/new", "")


@pytest.mark.parametrize("job, line", [
    ({"status": "downloading", "total_size_bytes": 100, "downloaded_bytes": 0},
     {"total": 100}),  # Ollama leaves `completed` out while it is 0
    ({"status": "downloading", "total_size_bytes": 100, "downloaded_bytes": 40}, {"total": 100, "completed": 40}),
    ({"status": "paused", "total_size_bytes": 100, "downloaded_bytes": 140}, {"total": 100, "completed": 100}),
    ({"status": "downloading"}, {"total": 0}),
])
def test_it_turns_a_job_status_into_an_ollama_progress_line(job, line):
    digest = digest_of("default", CATALOG)
    assert progress_line(digest, job) == {"status": f"pulling {digest[7:19]}", "digest": digest, **line}


def test_the_digest_is_stable_for_a_download_and_differs_between_downloads_and_backends():
    assert digest_of("default", CATALOG) == digest_of("default", Download("google/gemma-3-1b"))
    assert len({digest_of("default", CATALOG), digest_of("gpu", CATALOG), digest_of("default", SMALL)}) == 3
    assert len(digest_of("default", CATALOG)) == len("sha256:") + 64


# --- download: in routes.yaml and the admin ----------------------------------------------------


@pytest.mark.parametrize("value, download", [
    ("google/gemma-3-1b", CATALOG),
    ("hf.co/lmstudio-community/Qwen3-0.6B-GGUF:Q8_0", SMALL),
    ({"hf": "lmstudio-community/Qwen3-0.6B-GGUF", "quantization": "Q8_0"}, SMALL),
    ({"hf": "user/repo"}, Download("user/repo", hf=True)),
    (None, None), ("", None),
])
def test_it_reads_an_aliases_download_in_every_form(value, download):
    assert parse_download(value) == download


@pytest.mark.parametrize("spec, line, words", [
    ("{model: m, download: 3}", 3, "bad 'download': expected a catalog id such as google/gemma-3-1b"),
    ("{model: m, download: 'two words'}", 3, "got 'two words'"),
    ("{model: m, download: {hf: nope}}", 3, "a Hugging Face repo is 'user/repo', got 'nope'"),
    ("{model: m, download: {hf: u/r, quantisation: Q4}}", 3, "got keys hf, quantisation"),
    ("{model: m, download: {hf: u/r, quantization: 'Q 4'}}", 3, "a quantization is a name such as Q4_K_M"),
    ("\n    model: m\n    download: [a]", 5, "got list"),
])
def test_a_bad_download_is_refused_naming_the_file_and_line(spec, line, words):
    with pytest.raises(RouteTableError) as info:
        load_routes(io.StringIO(f"aliases:\n  x: 1\n  gemma: {spec}\n".replace("x: 1", "x: m")), "r.yaml")
    assert str(info.value).startswith(f"r.yaml:{line}: alias 'gemma': ") and words in str(info.value)


def test_export_writes_downloads_back_in_the_form_routes_yaml_reads():
    text = dump_routes(TABLE)
    assert "download: google/gemma-3-1b" in text
    again = load_routes(io.StringIO(text))
    assert again.aliases["small"].download == SMALL and again.aliases["coder"].download is None


@pytest.mark.django_db
def test_the_admin_stores_a_download_validated_like_the_file(routes_file):
    stored = StoredAlias(name="small", model="qwen3-0.6b", download="hf.co/lmstudio-community/Qwen3-0.6B-GGUF:q8_0")
    stored.full_clean()
    stored.save()
    assert stored.to_route_alias().download == SMALL
    with pytest.raises(ValidationError) as info:
        StoredAlias(name="bad", model="m", download="not a name").full_clean()
    assert "bad 'download'" in info.value.message_dict["download"][0]


@pytest.mark.django_db
def test_routes_import_and_export_carry_downloads(routes_file, tmp_path, capsys):
    path = tmp_path / "more.yaml"
    path.write_text("aliases:\n  small: {model: qwen3-0.6b, download: {hf: u/r, quantization: Q8_0}}\n")
    call_command("routes", "import", str(path))
    capsys.readouterr()
    assert StoredAlias.objects.get(name="small").download == "hf.co/u/r:Q8_0"
    call_command("routes", "export")
    assert load_routes(io.StringIO(capsys.readouterr().out)).aliases["small"].download == Download(
        "u/r", hf=True, quantization="Q8_0")
    call_command("routes", "show")
    assert ["small", "qwen3-0.6b", "admin", "hf.co/u/r:Q8_0"] in [
        line.split() for line in capsys.readouterr().out.splitlines()]


# --- LM Studio's download API, faked by respx --------------------------------------------------


@pytest.fixture
def backend(upstream_mock):
    from routing.proxy.state import current

    return current().pool.default


@pytest.mark.anyio
async def test_a_second_pull_follows_the_running_job_and_a_forgotten_job_starts_again(upstream_mock, backend):
    started = upstream_mock.post("/api/v1/models/download").mock(return_value=httpx.Response(
        200, json={"job_id": "job_1", "status": "downloading", "total_size_bytes": 10}))
    status = upstream_mock.get("/api/v1/models/download/status/job_1").mock(return_value=httpx.Response(
        200, json={"job_id": "job_1", "status": "downloading", "downloaded_bytes": 5, "total_size_bytes": 10}))
    jobs = RunningJobs()
    assert (await jobs.start(backend, CATALOG, "gemma"))["status"] == "downloading"
    assert (await jobs.start(backend, CATALOG, "gemma"))["downloaded_bytes"] == 5
    assert (started.call_count, status.call_count) == (1, 1)
    status.mock(return_value=httpx.Response(404, json={"error": {"message": "gone", "code": "job_not_found"}}))
    with pytest.raises(JobGone):
        await jobs.status(backend, CATALOG, "job_1")
    assert (await jobs.start(backend, CATALOG, "gemma"))["status"] == "downloading"
    assert started.call_count == 2


@pytest.mark.django_db
@pytest.mark.anyio
async def test_an_lm_studio_without_the_download_api_is_a_501_saying_to_download_there(upstream_mock, routes_file):
    upstream_mock.get("/api/v0/models").mock(return_value=httpx.Response(200, json=MODELS))
    upstream_mock.post("/api/v1/models/download").mock(return_value=httpx.Response(
        200, json={"error": "Unexpected endpoint or method. (POST /api/v1/models/download)"}))
    response = await AsyncClient().post("/api/pull", {"model": "google/gemma-3-1b"}, content_type="application/json")
    assert response.status_code == 501
    assert response.json()["error"] == ("cannot pull 'google/gemma-3-1b': this LM Studio has no download API "
                                        "(/api/v1 came with LM Studio 0.4); download google/gemma-3-1b in "
                                        "LM Studio (or `lms get`)")


@pytest.mark.django_db
@pytest.mark.anyio
@pytest.mark.parametrize("body, message", [
    ({"model": "coder", "stream": "yes"}, "stream must be true or false"),
    ({"stream": True}, "model is required"),
])
async def test_a_bad_pull_request_is_a_400_naming_the_field(upstream_mock, routes_file, body, message):
    response = await AsyncClient().post("/api/pull", body, content_type="application/json")
    assert (response.status_code, response.json()) == (400, {"error": message})


@pytest.mark.django_db
def test_the_admin_form_edits_the_download_and_puts_a_bad_one_beside_the_field(admin_client, routes_file,
                                                                                monkeypatch):
    from adminui import lmstudio

    monkeypatch.setattr(lmstudio, "model_ids", lambda table=None: ([], "LM Studio's model list is unavailable"))
    form = {"name": "small", "model": "qwen3-0.6b", "enabled": "on", "system_mode": "prepend", "options": "{}",
            "policy": "fallback", "download": "hf.co/lmstudio-community/Qwen3-0.6B-GGUF:q8_0"}
    assert admin_client.post("/admin/routing/alias/add/", form).status_code == 302
    assert StoredAlias.objects.get(name="small").to_route_alias().download == SMALL
    page = admin_client.get(f"/admin/routing/alias/{StoredAlias.objects.get(name='small').pk}/change/")
    assert 'value="hf.co/lmstudio-community/Qwen3-0.6B-GGUF:Q8_0"' in page.content.decode()
    refused = admin_client.post("/admin/routing/alias/add/", {**form, "name": "other", "download": "a b"})
    assert "bad &#x27;download&#x27;" in str(refused.context["adminform"].form["download"].errors)
