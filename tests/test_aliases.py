"""Admin-stored aliases: validation like the YAML loader, the merge rule, hot reload, export and import."""
import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from adminui import lmstudio
from adminui.forms import AliasForm
from routing.config.loader import load_routes
from routing.config.registry import source_of
from routing.config.table import RouteAlias as RouteAlias
from routing.models import Alias
from routing.proxy.state import current
from tests.conftest import table_once_checked

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_lmstudio(monkeypatch):
    """The form asks LM Studio for its models; here it is unreachable."""
    monkeypatch.setattr(lmstudio, "model_ids", lambda table=None: ([], "LM Studio's model list is unavailable"))


def stored(**fields) -> Alias:
    alias = Alias(**{"name": "fast", "model": "llama-3.2-1b-instruct", **fields})
    alias.full_clean()
    alias.save()
    return alias


def form(**data) -> AliasForm:
    return AliasForm(data={"name": "fast", "model": "llama-3.2-1b-instruct", "enabled": "on",
                           "system_mode": "prepend", "options": "{}", **data})


# --- the model and the form validate like routes.yaml ------------------------------------------


def test_names_are_stored_without_latest_and_latest_is_a_duplicate():
    assert stored(name="fast:latest").name == "fast"
    with pytest.raises(ValidationError) as info:
        Alias(name="fast:latest", model="x").full_clean()
    assert "name" in info.value.message_dict


@pytest.mark.parametrize("fields, field, words", [
    ({"temperature": 7}, "temperature", "alias 'fast': 'temperature' must be between 0 and 2, got 7"),
    ({"system_mode": "after"}, "system_mode", "'after'"),
    ({"options": {"top_q": 1}}, "options", "alias 'fast': unknown option(s) top_q in 'options'"),
    ({"options": [1, 2]}, "options", "'options' must be a mapping of Ollama options"),
    ({"model": "  "}, "model", "'model' (the LM Studio model id) is required"),
])
def test_the_model_rejects_what_the_loader_rejects(fields, field, words):
    with pytest.raises(ValidationError) as info:
        Alias(**{"name": "fast", "model": "x", **fields}).full_clean()
    assert any(words in m for m in info.value.message_dict[field])


def test_the_database_refuses_an_out_of_range_temperature_too():
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        Alias.objects.create(name="hot", model="x", temperature=3)


def test_the_form_takes_durations_and_saves_seconds():
    f = form(ttl="1h30m", temperature="0.3", options='{"top_p": 0.8}')
    assert f.is_valid(), f.errors
    alias = f.save()
    assert (alias.ttl, alias.temperature, alias.options) == (5400, 0.3, {"top_p": 0.8})
    assert AliasForm(instance=alias).initial["ttl"] == "1h30m"


@pytest.mark.parametrize("data, field, words", [
    ({"ttl": "5 minutes"}, "ttl", "alias 'fast': bad 'ttl': not a duration: '5 minutes'"),
    ({"temperature": "2.5"}, "temperature", "'temperature' must be between 0 and 2"),
    ({"options": '{"num_gpus": 1}'}, "options", "unknown option(s) num_gpus"),
    ({"options": "{not json"}, "options", "valid JSON"),
])
def test_the_form_reports_errors_beside_the_field_like_the_loader(data, field, words):
    f = form(**data)
    assert not f.is_valid()
    assert any(words in m for m in f.errors[field]), f.errors


def test_the_form_says_when_lmstudio_is_unreachable_and_still_takes_a_typed_id():
    f = form(model="some/typed-model")
    assert "model list is unavailable" in str(f["model"])
    assert f.is_valid() and f.save().model == "some/typed-model"


def test_the_form_offers_lmstudio_models_in_a_datalist(monkeypatch):
    monkeypatch.setattr(lmstudio, "model_ids", lambda table=None: (["a-model", "b-model"], ""))
    html = str(form()["model"])
    assert 'list="model-lmstudio-models"' in html and '<option value="b-model">' in html


# --- the merge rule -----------------------------------------------------------------------------


def test_admin_aliases_are_merged_over_the_file_copy_on_write(routes_file):
    registry = current().registry
    assert registry.current_table().resolve("coder").model == "qwen2.5-7b-instruct"
    override = stored(name="coder", model="other-model", temperature=1.0)
    stored(name="newbie", model="llama-3.2-1b-instruct")
    stored(name="off", model="x", enabled=False)
    table = registry.current_table()
    file_table = registry.file_table()
    assert table.resolve("coder:latest").model == "other-model"
    assert table.resolve("coder").alias.temperature == 1.0
    assert table.resolve("tiny").alias.source == "file"
    assert table.resolve("off").alias is None  # disabled: not an alias (passes through as a name)
    assert {n: source_of(a, file_table) for n, a in table.aliases.items()} == {
        "coder": "admin override", "tiny": "file", "thinker": "file", "vision": "file",
        "embedder": "file", "newbie": "admin"}
    override.delete()
    assert registry.current_table().resolve("coder").model == "qwen2.5-7b-instruct"


@pytest.mark.django_db(transaction=True)
@pytest.mark.anyio
async def test_requests_see_admin_edits_at_once_without_asking_the_database_each_time(routes_file):
    from asgiref.sync import sync_to_async

    registry = current().registry
    assert (await registry.table()).resolve("fast").alias is None
    first = await registry.table()
    assert await registry.table() is first  # cached: same table object, no reload
    await sync_to_async(stored)(model="qwen3-4b-thinking")  # the save signal invalidates the cache
    assert (await registry.table()).resolve("fast").model == "qwen3-4b-thinking"


@pytest.mark.django_db(transaction=True)
@pytest.mark.anyio
async def test_another_process_edit_is_seen_after_the_check_interval(routes_file, monkeypatch):
    from asgiref.sync import sync_to_async

    import routing.config.registry as registry_module

    registry = current().registry
    monkeypatch.setattr(registry_module, "DB_CHECK_INTERVAL", 3600)
    await registry.table()
    # Another process writes to the database: no signal reaches this one.
    await sync_to_async(lambda: Alias.objects.bulk_create([Alias(name="fast", model="m1")]))()
    assert (await registry.table()).resolve("fast").alias is None  # within the interval: cached
    monkeypatch.setattr(registry_module, "DB_CHECK_INTERVAL", 0)
    table = await table_once_checked(registry, lambda table: table.resolve("fast").model == "m1")
    assert table.resolve("fast").model == "m1"


# --- export and import --------------------------------------------------------------------------


def test_export_loads_back_into_the_same_table(routes_file):
    stored(name="coder", model="other-model", ttl=90, temperature=0.5, system="Be brief.",
           system_mode="replace", options={"top_k": 20, "stop": ["</s>"]})
    registry = current().registry
    text = registry.export_yaml()
    again = load_routes(io.StringIO(text), source="export.yaml")
    expected = registry.current_table()
    assert again.defaults == expected.defaults
    assert {n: a.__class__(**{**a.__dict__, "source": "file"}) for n, a in expected.aliases.items()} \
        == dict(again.aliases)
    assert again.aliases["coder"] == RouteAlias(name="coder", model="other-model", ttl=90, temperature=0.5,
                                                system="Be brief.", system_mode="replace",
                                                options={"top_k": 20, "stop": ["</s>"]})


def test_the_export_command_writes_the_effective_table(routes_file, capsys):
    stored(name="newbie", model="m")
    call_command("routes", "export")
    table = load_routes(io.StringIO(capsys.readouterr().out))
    assert table.aliases["newbie"].model == "m" and table.aliases["coder"].ttl == 1800


def test_the_show_command_names_each_source(routes_file, capsys):
    stored(name="coder", model="other-model")
    call_command("routes", "show")
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["coder", "other-model", "admin", "override"] for line in lines)
    assert any(line.split() == ["tiny", "llama-3.2-1b-instruct", "file"] for line in lines)


def test_import_stores_every_alias_and_updates_existing_ones(tmp_path, routes_file):
    stored(name="tiny", model="old", description="mine")
    path = tmp_path / "more.yaml"
    path.write_text("aliases:\n  tiny: new-model\n  extra:latest:\n    model: m\n    ttl: 2m\n")
    call_command("routes", "import", str(path))
    assert dict(Alias.objects.values_list("name", "model")) == {"tiny": "new-model", "extra": "m"}
    assert Alias.objects.get(name="extra").ttl == 120
    assert Alias.objects.get(name="tiny").description == "mine"


def test_import_of_a_broken_file_stores_nothing_and_names_the_line(tmp_path, routes_file):
    path = tmp_path / "bad.yaml"
    path.write_text("aliases:\n  good: m\n  bad:\n    model: m\n    temperature: 9\n")
    with pytest.raises(CommandError, match=r"bad.yaml:5: alias 'bad': 'temperature' must be between"):
        call_command("routes", "import", str(path))
    assert not Alias.objects.exists()


def test_import_replace_deletes_aliases_the_file_does_not_name(tmp_path, routes_file):
    stored(name="gone", model="m")
    path = tmp_path / "r.yaml"
    path.write_text("aliases: {kept: m}\n")
    call_command("routes", "import", str(path), "--replace")
    assert list(Alias.objects.values_list("name", flat=True)) == ["kept"]


def test_a_stored_row_that_fails_validation_is_skipped_not_fatal(routes_file, caplog):
    Alias.objects.bulk_create([Alias(name="odd", model="m", options={"num_gpus": 1}),
                               Alias(name="fine", model="m")])
    table = current().registry.current_table()
    assert "fine" in table.aliases and "odd" not in table.aliases
    assert "admin alias 'odd' skipped" in caplog.text
