"""The alias admin's own pages, through Django's test client (the browser tests drive the forms)."""
import io

import pytest

from adminui import lmstudio
from routing.config.loader import load_routes
from routing.models import Alias

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_lmstudio(monkeypatch):
    monkeypatch.setattr(lmstudio, "model_ids", lambda table=None: ([], "LM Studio's model list is unavailable"))


def test_the_list_shows_every_effective_alias_with_its_source(admin_client, routes_file):
    Alias.objects.create(name="coder", model="other")
    Alias.objects.create(name="mine", model="m")
    page = admin_client.get("/admin/routing/alias/").content.decode()
    assert '<tr data-alias="tiny">' in page and "?override=tiny" in page
    assert "admin override of routes.yaml" in page
    assert admin_client.get("/admin/routing/alias/?source=override").context["cl"].result_count == 1
    assert admin_client.get("/admin/routing/alias/?q=mine").context["cl"].result_count == 1


def test_override_prefills_the_form_from_the_file_alias(admin_client, routes_file):
    form = admin_client.get("/admin/routing/alias/add/?override=coder:latest").context["adminform"].form
    assert form.initial["name"] == "coder" and form.initial["model"] == "qwen2.5-7b-instruct"
    assert (form.initial["ttl"], form.initial["temperature"], form.initial["options"]) == (
        "30m", 0.2, {"top_p": 0.9})


def test_override_of_an_existing_override_opens_it(admin_client, routes_file):
    stored = Alias.objects.create(name="coder", model="other")
    response = admin_client.get("/admin/routing/alias/add/?override=coder")
    assert response.status_code == 302 and response["Location"].endswith(f"/{stored.pk}/change/")


def test_export_downloads_a_routes_file(admin_client, routes_file):
    Alias.objects.create(name="mine", model="m", ttl=60)
    response = admin_client.get("/admin/routing/alias/export/?download=1")
    assert response["Content-Disposition"] == 'attachment; filename="routes.yaml"'
    table = load_routes(io.StringIO(response.content.decode()))
    assert table.aliases["mine"].ttl == 60 and "coder" in table.aliases


def test_testing_a_name_that_is_no_alias_is_a_404(admin_client, routes_file):
    assert admin_client.get("/admin/routing/alias/test/no-such-alias/").status_code == 404


def test_a_broken_routes_file_is_shown_on_admin_pages(admin_client, routes_file):
    from routing.proxy.state import current

    current().registry
    routes_file.write_text("aliases:\n  a:\n    modle: x\n")
    current().registry._checked = float("-inf")  # look at the file now, not in 0.5 s
    page = admin_client.get("/admin/").content.decode()
    assert 'id="routes-error"' in page and "routes.yaml:3: alias &#x27;a&#x27;: unknown key" in page
