"""The admin is served (with its static files) and a user can log in, in a real headless Chromium."""
import pytest

from tests.conftest import admin_login, make_superuser

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_a_superuser_logs_into_the_admin_with_its_stylesheet(page, proxy_server):
    user, password = make_superuser(proxy_server)
    admin_login(page, proxy_server, user, password)
    assert page.locator("#site-name").inner_text() == "LM Studio alias proxy"
    color = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert color != "rgba(0, 0, 0, 0)"  # admin CSS was served
