"""The console's test set-up: operators with passwords on the module's central, a small
HTTP client that keeps cookies and does not follow redirects (the plain-HTTP tests), and
the browser tests' Chromium (:data:`NEEDS_CHROMIUM`, the ``browser`` and ``fresh``
fixtures, :func:`text`)."""

from __future__ import annotations

import http.cookiejar
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from central.testing import CentralProcess

#: The browser tests' skip: Debian's chromium and chromium-driver (``tools/dev test``
#: installs them).
NEEDS_CHROMIUM = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="needs chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

#: Every test operator's password (12+ characters, as the store asks).
PASSWORD = "correct horse battery"
#: name -> role of the operators :func:`console_central` adds.
OPERATORS = {
    "olivia": "security_officer",
    "paul": "pass_office",
    "ada": "auditor",
    "lou": "pass_office",  # locked out by a test
}


@pytest.fixture(scope="module")
def console_central(central: CentralProcess) -> Iterator[CentralProcess]:
    """The module's central with :data:`OPERATORS` (password :data:`PASSWORD`), added
    through its data directory as ``portier-central operator add`` does."""
    from central.settings import CentralSettings
    from central.store import CentralStore

    with CentralStore(CentralSettings(data_dir=central.data_dir)) as store:
        existing = {o["name"] for o in store.list_operators()}
        for name, role in OPERATORS.items():
            if name not in existing:
                store.add_operator(name, role, PASSWORD)
    yield central


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


class ConsoleClient:
    """A browser without JavaScript: cookies kept, redirects returned as they are."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def request(
        self,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=10) as response:
                return Answer(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), exc.read().decode())

    def login(self, name: str, password: str = PASSWORD) -> Answer:
        """Open the login page (for its token), post the form; return the answer."""
        self.request("/console/login")
        token = self.cookie("portier_console_login") or ""
        return self.request(
            "/console/login", {"name": name, "password": password, "login_token": token}
        )


@pytest.fixture
def client(console_central: CentralProcess) -> ConsoleClient:
    """A fresh cookie-keeping client of the module's central."""
    return ConsoleClient(console_central.url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Selenium, chromium-driver)."""
    from central.console.screenshots import chromium

    driver = chromium()
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def fresh(browser: Any) -> Any:
    """The module's browser with no cookie left from the test before."""
    browser.delete_all_cookies()
    return browser


def text(browser: Any, css: str) -> str:
    """The text of the first element *css* selects (waiting as the driver does)."""
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)
