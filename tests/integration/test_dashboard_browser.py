"""The dashboard in real headless Chromium (Debian's chromium, driven by playwright), against the
real app with the scripted engine on loopback. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import openai
import pytest

from coderapi.app import create_app
from coderapi.engines.fake import FakeEngine
from tests.api.conftest import ALIAS_ID, make_settings
from tests.conftest import require_or_skip
from tests.servers import serve_in_thread

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
PASSWORD = "correct horse battery"
ADMIN = "admin@example.com"


def _chromium() -> str | None:
    path = os.environ.get("CODERAPI_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).exists() else None


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    require_or_skip(path is not None, "no Chromium (apt-get install chromium; CI sets CODERAPI_TEST_CHROMIUM)")
    require_or_skip(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("dashboard"))
    app = create_app(settings, engine_factory=lambda spec: FakeEngine(context_length=spec.context_length, token_delay=0.01))
    app.state.services.db.upgrade()
    seed = app.state.services.signups.create_user(ADMIN, PASSWORD, role="admin")
    with ThreadPoolExecutor(1) as pool:  # playwright's sync API keeps an event loop in this thread
        pool.submit(asyncio.run, seed).result()
    with serve_in_thread(app, wait_healthy=10) as base:
        yield base, app


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=site[0])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site[0])
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def client(site, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=site[0] + "/v1", api_key=key, max_retries=0, timeout=30)


def ask(site, key: str) -> str:
    answer = client(site, key).chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content


def sign_up(page, email: str) -> None:
    page.goto("/signup")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_confirm]", PASSWORD)
    page.click("button[type=submit]:has-text('Create account')")
    page.wait_for_url(re.compile(r"/$"))


def sign_in(page, email: str) -> None:
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def create_key(page, name: str) -> tuple[str, str]:
    page.goto("/keys")
    page.fill("#create-key-form input[name=name]", name)
    page.fill("#create-key-form input[name=limit_threshold]", "5")
    page.select_option("#create-key-form select[name=limit_retention]", "month")
    page.click("#create-key-form button[type=submit]")
    secret = page.inner_text("[data-testid=new-secret]").strip()
    return secret, secret[4:12]


def key_row(page, prefix: str):
    return page.locator(f"#keys-table tr[data-prefix='{prefix}']")


def test_sign_up_key_call_usage_logs_disable_enable_delete(page, site):
    page.goto("/keys")
    assert "/login" in page.url  # private pages send visitors to sign in
    shot(page, "login")
    sign_up(page, "ada@example.com")
    assert "Welcome" in page.inner_text(".alert")
    shot(page, "overview-new")

    secret, prefix = create_key(page, "laptop")
    assert secret.startswith("cdr-") and len(secret) == 44
    page.click("#new-key button[data-copy-from]")
    page.wait_for_selector("#new-key button.copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "keys-created")
    page.goto("/keys")
    assert secret not in page.content()  # shown once, never again
    assert "laptop" in key_row(page, prefix).inner_text()

    assert "Hello" in ask(site, secret)
    page.goto("/usage")
    assert page.inner_text("[data-testid=usage-requests]") == "1"
    assert prefix in page.inner_text("[data-testid=usage-keys]")
    shot(page, "usage-first-call")
    page.goto("/logs")
    row = page.locator("#logs-table tbody tr").first
    assert prefix in row.inner_text() and row.get_attribute("data-status") == "success"
    shot(page, "logs-first-call")

    page.goto("/keys")
    key_row(page, prefix).locator("button.switch").click()
    assert "disabled" in page.inner_text(".alert")
    assert key_row(page, prefix).locator("button.switch").get_attribute("aria-checked") == "false"
    with pytest.raises((openai.PermissionDeniedError, openai.AuthenticationError)):
        ask(site, secret)
    key_row(page, prefix).locator("button.switch").click()
    assert "enabled" in page.inner_text(".alert")
    assert "Hello" in ask(site, secret)

    key_row(page, prefix).locator("button:has-text('Delete')").click()
    page.wait_for_selector("#confirm-dialog[open]")
    assert prefix in page.inner_text("#confirm-dialog .dialog-text")
    shot(page, "keys-delete-confirm")
    page.click("#confirm-yes")
    page.wait_for_selector(".alert:has-text('deleted')")
    assert key_row(page, prefix).count() == 0
    with pytest.raises(openai.AuthenticationError):
        ask(site, secret)


def test_rename_and_scopes_of_a_management_key(page):
    sign_up(page, "grace@example.com")
    page.goto("/keys")
    page.check("#create-key-form input[value=management]")
    assert page.is_hidden("fieldset.scopes[data-kind=inference]")
    page.fill("#create-key-form input[name=name]", "ops")
    page.click("#create-key-form button[type=submit]")
    prefix = page.inner_text("[data-testid=new-secret]").strip()[4:12]
    row = key_row(page, prefix)
    assert "management" in row.inner_text()
    row.locator("details.inline-edit summary").click()
    row.locator("input[name=name]").fill("operations")
    row.locator("button:has-text('Save')").click()
    assert "operations" in key_row(page, prefix).inner_text()
    shot(page, "keys-rename")


def test_playground_streams_an_answer(page, site):
    sign_up(page, "linus@example.com")
    secret, prefix = create_key(page, "playground")
    page.click("button[data-remember-key]")
    page.wait_for_url(re.compile(r"/playground"))
    assert page.input_value("#pg-key-select") == prefix
    text = "def add(a, b):\n    return a + b  # " + "streamed token by token " * 4
    page.fill("#pg-input", "repeat: " + text)
    assert f'base_url="{site[0]}/v1"' in page.inner_text("#pg-code-python")
    page.click("#pg-send")
    assistant = page.locator(".msg-assistant .msg-body").last
    page.wait_for_function(
        "n => { const t = document.querySelector('.msg-assistant .msg-body').textContent; return t.length > 0 && t.length < n; }",
        arg=len(text),
    )  # seen part-way: the answer really streams
    page.wait_for_selector("#pg-status:has-text('out')")
    assert assistant.inner_text().strip() == text.strip()
    shot(page, "playground")
    assert secret not in page.inner_text("#pg-code-python")  # code samples never show the secret

    page.evaluate("sessionStorage.clear()")  # a new tab: paste the key instead
    page.goto("/playground")
    assert page.input_value("#pg-key-select") == "__paste"
    page.fill("#pg-key", secret)
    assert prefix in page.inner_text("#pg-key-hint")
    page.fill("#pg-input", "repeat: pasted")
    page.click("#pg-send")
    page.wait_for_selector(".msg-assistant .msg-body:has-text('pasted')")
    page.wait_for_selector("#pg-status:has-text('out')")
    assert page.input_value("#pg-key-select") == prefix  # remembered in this tab, as ticked


def test_billing_docs_admin_and_landing(page, site):
    sign_up(page, "margaret@example.com")
    page.goto("/billing")
    assert page.inner_text("[data-testid=balance]") == "$5.00"
    assert ALIAS_ID in page.inner_text("table")
    shot(page, "billing-new")
    page.goto("/docs")
    assert "/v1/chat/completions" in page.inner_text(".docs-body")
    assert f'base_url="{site[0]}/v1"' in page.inner_text("#quickstart")
    page.click("#quickstart [data-tab=curl]")
    assert f"--url '{site[0]}/v1/chat/completions'" in page.inner_text("#quickstart")
    shot(page, "docs")
    page.goto("/admin")
    assert "Admins only" in page.inner_text("h1")

    page.context.clear_cookies()
    sign_in(page, ADMIN)
    page.goto("/admin")
    row = page.locator("tr[data-user='margaret@example.com']")
    row.locator("input[name=amount]").fill("2.5")
    row.locator("input[name=reason]").fill("welcome bonus")
    row.locator("button:has-text('Grant')").click()
    assert "7.50 USD" in page.inner_text(".alert")
    row = page.locator("tr[data-user='margaret@example.com']")
    row.locator("input[name=rpm_limit]").fill("120")
    row.locator("form[action$='/limits'] button").click()
    assert page.locator("tr[data-user='margaret@example.com'] input[name=rpm_limit]").input_value() == "120"
    shot(page, "admin")

    page.context.clear_cookies()
    page.goto("/")
    assert "your own API" in page.inner_text("h1")
    shot(page, "landing")


def _seed_history(app, prefixes: list[str], days: int = 20) -> None:
    """Backdated usage rows (as metering writes them) so the gallery shots show a few weeks."""
    from decimal import Decimal

    from coderapi import crud
    from coderapi.store.tables import utcnow

    now = utcnow()
    with app.state.services.db.session() as session:
        keys = [crud.keys.by_prefix(session, p) for p in prefixes]
        for day in range(1, days + 1):
            for n in range(3 + (day * 7) % 11):
                key = keys[(day + n) % len(keys)]
                prompt, completion = 180 + 37 * ((day * n) % 23), 90 + 61 * ((day + n) % 17)
                cost = Decimal(prompt + 2 * completion) / 1_000_000
                status = "error" if (day + n) % 13 == 0 else "success"
                crud.usage.insert(
                    session, request_id=f"req_seed{day:02d}{n:02d}", user_id=key.user_id, key_id=key.id,
                    key_prefix=key.prefix, model=ALIAS_ID if n % 3 else "Qwen/Qwen2.5-Coder-0.5B-Instruct",
                    endpoint="chat.completions", prompt_tokens=prompt, completion_tokens=completion,
                    cost=cost if status == "success" else 0, status=status, status_code=200 if status == "success" else 500,
                    latency_ms=300 + 11 * n, ttft_ms=40 + n, origin="api", created_at=now - timedelta(days=day, hours=n),
                )
                if status == "success":
                    crud.users.adjust_balance(session, key.user_id, -cost)


def test_gallery_with_a_few_weeks_of_history(page, site):
    """The README's screenshots: one user with two keys, real calls today and seeded history."""
    sign_up(page, "demo@example.com")
    laptop, laptop_prefix = create_key(page, "laptop")
    _, ci_prefix = create_key(page, "ci")
    create_key(page, "editor")
    for _ in range(3):
        ask(site, laptop)
    _seed_history(site[1], [laptop_prefix, ci_prefix])
    for path, name in [("/", "overview"), ("/keys", "keys"), ("/usage?period=30d", "usage"),
                       ("/logs", "logs"), ("/billing", "billing")]:
        page.goto(path)
        shot(page, name)
    page.goto("/usage?period=30d")
    assert int(page.inner_text("[data-testid=usage-requests]").replace(",", "")) > 50
