"""Patterns, defaults and declared endpoints stored in the admin: validation shared with the loader,
the merge over routes.yaml, hot reload, export, import and `routes show`."""
import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from adminui import lmstudio
from routing.config.loader import RouteTableError, load_routes
from routing.config.table import RouteEndpoint as TableEndpoint
from routing.models import Alias, DeclaredEndpoint, RouteDefaults
from routing.proxy.state import current
from tests.conftest import table_once_checked, use_state

pytestmark = pytest.mark.django_db

ROUTES = """
defaults:
  ttl: 10m
  fallback: coder
aliases:
  coder: {model: qwen2.5-7b-instruct, temperature: 0.2}
  tiny: llama-3.2-1b-instruct
  "llama3*": qwen3-4b-thinking
endpoints:
  - {method: GET, path: /api/experimental/capabilities, json: {features: [chat]}}
"""


@pytest.fixture(autouse=True)
def no_lmstudio(monkeypatch):
    monkeypatch.setattr(lmstudio, "model_ids", lambda table=None: ([], "LM Studio's model list is unavailable"))


@pytest.fixture
def routes(routes_file, settings):
    routes_file.write_text(ROUTES)
    use_state(settings)
    return routes_file


def saved(row):
    row.full_clean()
    row.save()
    return row


def errors(row) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        row.full_clean()
    return info.value.message_dict


# --- pattern aliases ----------------------------------------------------------------------------


def test_a_pattern_tying_with_a_file_pattern_is_refused_naming_it(routes):
    messages = errors(Alias(name="llama3?", model="m"))["name"]
    assert messages == ["patterns 'llama3*' (in routes.yaml) and 'llama3?' are equally specific (same "
                        "literal prefix 'llama3'): make one more specific"]


def test_a_pattern_tying_with_another_admin_pattern_is_refused_naming_it(routes):
    saved(Alias(name="gpt-4*", model="m"))
    assert "'gpt-4*' (in the admin)" in errors(Alias(name="gpt-4?", model="m"))["name"][0]


@pytest.mark.parametrize("name", ["llama3.1*", "llama3*", "gpt-*"])
def test_a_more_specific_pattern_or_an_override_of_the_same_pattern_is_fine(routes, name):
    saved(Alias(name=name, model="m"))
    assert current().registry.current_table().aliases[name].source == "admin"


def test_an_edited_pattern_does_not_tie_with_itself_and_a_disabled_one_ties_with_nothing(routes):
    mine = saved(Alias(name="qwen*", model="m"))
    mine.model = "other"
    saved(mine)
    saved(Alias(name="llama3?", model="m", enabled=False))


def test_the_loader_and_the_admin_report_ties_alike(routes):
    with pytest.raises(RouteTableError, match=r"x.yaml:3: patterns 'a\*' \(line 2\) and 'a\?' are "
                                               r"equally specific"):
        load_routes(io.StringIO("aliases:\n  'a*': m\n  'a?': m\n"), "x.yaml")


def test_an_admin_pattern_serves_matching_names(routes):
    saved(Alias(name="gpt-4*", model="llama-3.2-1b-instruct"))
    route = current().registry.current_table().resolve("gpt-4o")
    assert (route.model, route.via, route.alias.source) == ("llama-3.2-1b-instruct", "pattern", "admin")


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_set_in_the_admin_override_the_file_and_empty_ones_keep_it(routes):
    table = current().registry.current_table()
    assert (table.defaults.expose, table.defaults.ttl, table.defaults.fallback) == ("all", 600, "coder")
    saved(RouteDefaults(expose="aliases", passthrough=False, fallback="tiny"))
    defaults = current().registry.current_table().defaults
    assert (defaults.expose, defaults.passthrough, defaults.fallback, defaults.ttl) == (
        "aliases", False, "tiny", 600)
    assert current().registry.current_table().resolve("unknown-model").model == "llama-3.2-1b-instruct"


def test_the_defaults_are_one_row():
    saved(RouteDefaults(expose="none"))
    saved(RouteDefaults(expose="aliases"))
    assert list(RouteDefaults.objects.values_list("pk", "expose")) == [(1, "aliases")]


@pytest.mark.parametrize("fields, field, words", [
    ({"fallback": "nobody"}, "fallback", "defaults: 'fallback' must name an enabled alias that is no "
                                         "pattern (routes.yaml's or the admin's), got 'nobody'"),
    ({"fallback": "llama3*"}, "fallback", "got 'llama3*'"),
    ({"expose": "some"}, "expose", "not a valid choice"),
    ({"ttl": 0}, "ttl", "greater than or equal to 1"),
])
def test_the_defaults_are_validated_like_the_loader(routes, fields, field, words):
    assert any(words in m for m in errors(RouteDefaults(**fields))[field])


def test_the_fallback_may_name_an_admin_alias(routes):
    saved(Alias(name="mine", model="m"))
    assert saved(RouteDefaults(fallback="mine:latest")).fallback == "mine"


def test_the_shared_defaults_rule_refuses_a_bad_expose_even_around_the_form(routes, caplog):
    RouteDefaults.objects.create(expose="some")  # written around the admin's validation
    assert current().registry.current_table().defaults.expose == "all"
    assert "admin defaults skipped: defaults: 'expose' must be one of all, aliases, none" in caplog.text


# --- declared endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize("fields, field, words", [
    ({"path": "/api/chat"}, "path", "endpoint: '/api/chat' would shadow the proxy's own API"),
    ({"path": "/v1/models"}, "path", "would shadow"),
    ({"path": "/health"}, "path", "would shadow"),
    ({"path": "props"}, "path", "'path' must be a string starting with '/'"),
    ({"status": 700}, "status", "less than or equal to 599"),
    ({"method": "BREW"}, "method", "not a valid choice"),
])
def test_declared_endpoints_are_validated_like_the_loader(routes, fields, field, words):
    row = DeclaredEndpoint(**{"method": "GET", "path": "/props", **fields})
    assert any(words in m for m in errors(row)[field]), errors(row)


def test_admin_endpoints_add_to_the_file_and_override_the_same_method_and_path(routes):
    saved(DeclaredEndpoint(method="POST", path="/props", body={"n_ctx": 8192}))
    saved(DeclaredEndpoint(method="GET", path="/api/experimental/capabilities", status=201, body=[]))
    table = current().registry.current_table()
    assert table.endpoint("POST", "/props") == TableEndpoint("POST", "/props", 200, {"n_ctx": 8192},
                                                            source="admin")
    capabilities = table.endpoint("HEAD", "/api/experimental/capabilities")
    assert (capabilities.status, capabilities.body, capabilities.source) == (201, [], "admin")
    assert len(table.endpoints) == 2


def test_the_same_method_and_path_is_stored_once(routes):
    saved(DeclaredEndpoint(method="GET", path="/x"))
    assert "already exists" in str(errors(DeclaredEndpoint(method="get", path="/x")))


# --- hot reload ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.anyio
async def test_requests_see_defaults_and_endpoints_saved_in_the_admin_at_once(routes):
    from asgiref.sync import sync_to_async

    registry = current().registry
    first = await registry.table()
    assert await registry.table() is first and first.defaults.expose == "all"
    await sync_to_async(saved)(RouteDefaults(expose="aliases"))
    assert (await registry.table()).defaults.expose == "aliases"
    await sync_to_async(saved)(DeclaredEndpoint(method="GET", path="/probe", body={"ok": True}))
    assert (await registry.table()).endpoint("GET", "/probe").body == {"ok": True}
    await sync_to_async(DeclaredEndpoint.objects.all().delete)()
    assert (await registry.table()).endpoint("GET", "/probe") is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.anyio
async def test_another_process_edit_of_defaults_or_endpoints_is_seen_after_the_interval(routes,
                                                                                        monkeypatch):
    from asgiref.sync import sync_to_async

    import routing.config.registry as registry_module

    registry = current().registry
    monkeypatch.setattr(registry_module, "DB_CHECK_INTERVAL", 3600)
    await registry.table()
    # Another process writes to the database: no signal reaches this one.
    await sync_to_async(lambda: (RouteDefaults.objects.bulk_create([RouteDefaults(pk=1, expose="none")]),
                                 DeclaredEndpoint.objects.bulk_create([DeclaredEndpoint(path="/p")])))()
    assert (await registry.table()).defaults.expose == "all"  # within the interval: cached
    monkeypatch.setattr(registry_module, "DB_CHECK_INTERVAL", 0)
    table = await table_once_checked(registry, lambda table: table.defaults.expose == "none")
    assert table.defaults.expose == "none" and table.endpoint("GET", "/p").source == "admin"


# --- export, import, show -----------------------------------------------------------------------


def test_export_loads_back_into_the_same_table_with_everything(routes):
    saved(Alias(name="gpt-4*", model="llama-3.2-1b-instruct", hidden=True))
    saved(RouteDefaults(expose="aliases", fallback="tiny", passthrough=False))
    saved(DeclaredEndpoint(method="POST", path="/props", status=202, body={"a": [1, None]}))
    expected = current().registry.current_table()
    again = load_routes(io.StringIO(current().registry.export_yaml()), "export.yaml")
    assert again.defaults == expected.defaults
    assert again.defaults.expose == "aliases" and again.defaults.ttl == 600
    as_file = {n: a.__class__(**{**a.__dict__, "source": "file"}) for n, a in expected.aliases.items()}
    assert dict(again.aliases) == as_file and again.aliases["gpt-4*"].hidden
    assert [e.__class__(**{**e.__dict__, "source": "file"}) for e in expected.endpoints] == \
        list(again.endpoints)


def test_import_stores_defaults_and_endpoints_in_the_admin(tmp_path, routes):
    path = tmp_path / "more.yaml"
    path.write_text("defaults: {expose: aliases, fallback: helper}\naliases:\n  helper: m\n"
                    "  'mistral*': m2\nendpoints:\n"
                    "  - {method: post, path: /props, status: 201, json: {a: 1}}\n")
    call_command("routes", "import", str(path))
    stored = RouteDefaults.load()
    assert (stored.expose, stored.fallback, stored.passthrough, stored.ttl) == (
        "aliases", "helper", None, None)
    assert list(DeclaredEndpoint.objects.values_list("method", "path", "status", "body")) == [
        ("POST", "/props", 201, {"a": 1})]
    table = current().registry.current_table()
    assert table.resolve("nobody-knows").alias is None  # passthrough still routes.yaml's (on)
    assert table.defaults.fallback == "helper" and table.resolve("mistral-7b").model == "m2"


def test_import_replace_clears_what_the_file_does_not_set(tmp_path, routes):
    saved(RouteDefaults(expose="none", passthrough=False))
    saved(DeclaredEndpoint(method="GET", path="/gone"))
    path = tmp_path / "r.yaml"
    path.write_text("defaults: {passthrough: false}\naliases: {kept: m}\n")
    call_command("routes", "import", str(path), "--replace")
    stored = RouteDefaults.load()
    assert (stored.expose, stored.passthrough) == ("", False)
    assert not DeclaredEndpoint.objects.exists()


def test_import_refuses_a_pattern_tying_with_routes_yaml_and_stores_nothing(tmp_path, routes):
    path = tmp_path / "tie.yaml"
    path.write_text("defaults: {expose: none}\naliases:\n  fine: m\n  'llama3?': m\n")
    with pytest.raises(CommandError, match=r"alias 'llama3\?': patterns 'llama3\*' \(in routes.yaml\)"):
        call_command("routes", "import", str(path))
    assert not Alias.objects.exists() and not RouteDefaults.objects.exists()


def test_show_lists_defaults_and_endpoints_with_their_sources(routes, capsys):
    saved(RouteDefaults(expose="aliases"))
    saved(DeclaredEndpoint(method="POST", path="/props"))
    saved(Alias(name="gpt-4*", model="m", hidden=True))
    call_command("routes", "show")
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["gpt-4*", "(pattern)", "(hidden)", "m", "admin"] in lines
    assert ["expose", "aliases", "admin"] in lines and ["fallback", "coder", "file"] in lines
    assert ["ttl", "600", "file"] in lines
    assert ["GET", "/api/experimental/capabilities", "200", "file"] in lines
    assert ["POST", "/props", "200", "admin"] in lines


# --- the admin pages ----------------------------------------------------------------------------


def test_the_alias_list_says_which_aliases_are_patterns_and_hidden(admin_client, routes):
    saved(Alias(name="secret", model="m", hidden=True))
    page = admin_client.get("/admin/routing/alias/").content.decode()
    assert '<tr data-alias="llama3*">' in page
    assert page.split('<tr data-alias="llama3*">')[1].split('class="kind">')[1].startswith("pattern")
    assert page.split('<tr data-alias="secret">')[1].split('class="kind">')[1].startswith("name, hidden")
    assert "fallback alias <strong>coder</strong>" in page


def test_the_defaults_page_is_one_form_showing_the_file_values(admin_client, routes):
    response = admin_client.get("/admin/routing/routedefaults/")
    assert response.status_code == 302 and response["Location"].endswith("/routedefaults/1/change/")
    page = admin_client.get(response["Location"]).content.decode()
    assert 'routes.yaml: <code>coder</code>' in page and 'routes.yaml: <code>10m</code>' in page
    assert '<option value="tiny">' in page  # the fallback offers the effective aliases
    form = {"fallback": "", "expose": "aliases", "passthrough": "unknown", "ttl": "1h"}
    admin_client.post(response["Location"], form)
    assert (RouteDefaults.load().expose, RouteDefaults.load().ttl) == ("aliases", 3600)
    bad = admin_client.post(response["Location"], {**form, "fallback": "llama3*", "ttl": "soon"})
    assert "got &#x27;llama3*&#x27;" in bad.content.decode()
    assert "defaults: bad &#x27;ttl&#x27;" in bad.content.decode()


def test_the_endpoint_list_shows_every_effective_endpoint_with_its_source(admin_client, routes):
    saved(DeclaredEndpoint(method="POST", path="/props"))
    page = admin_client.get("/admin/routing/declaredendpoint/").content.decode()
    file_row = page.split('data-endpoint="GET /api/experimental/capabilities"')[1].split("</tr>")[0]
    assert 'class="source">file<' in file_row and "?override=GET%20/api/experimental/capabilities" in file_row
    assert 'class="source">admin<' in page.split('data-endpoint="POST /props"')[1]
    form = admin_client.get("/admin/routing/declaredendpoint/add/?override=GET%20/api/experimental/"
                            "capabilities").context["adminform"].form
    assert (form.initial["path"], form.initial["body"]) == ("/api/experimental/capabilities",
                                                            {"features": ["chat"]})


def test_manage_py_check_warns_about_admin_rows_a_routes_file_edit_broke(routes):
    from routing.checks import check_admin_store

    saved(Alias(name="mistral?", model="m"))
    saved(RouteDefaults(fallback="coder"))
    assert check_admin_store() == []
    DeclaredEndpoint.objects.create(method="GET", path="/api/chat")  # written around the admin
    broken = ROUTES.replace("coder", "coder2").replace("aliases:\n", "aliases:\n  'mistral*': m\n")
    routes.write_text(broken)
    current().registry._checked = float("-inf")  # look at the file now
    messages = [w.msg for w in check_admin_store()]
    assert len(messages) == 3, messages
    assert "admin alias 'mistral?': patterns 'mistral*' (in routes.yaml) and 'mistral?'" in messages[0]
    assert "admin endpoint GET /api/chat: endpoint: '/api/chat' would shadow" in messages[1]
    assert messages[2].startswith("admin defaults: defaults: 'fallback' must name an enabled alias")
