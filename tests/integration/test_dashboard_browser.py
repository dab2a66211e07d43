"""The coordinator's dashboard in a real headless Chromium, against three real nodes.

An operator's session: `borderlink dashboard` prints a one-time link (the token in its fragment);
the browser opens it, the page takes the token out of the address, signs in and shows the units,
and the browser holds no cookie (the session key is in this tab's sessionStorage, sent as a
bearer). The same link in a second page is refused. A message sent meanwhile appears in the live
feed without a reload, and a unit that stops shows as not up (silent) and red. The page runs
under the dashboard's CSP (no inline script or style), so a console error or a page error fails
the test too.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import NodeProc, make_network, stop_all

CHROMIUM = "/usr/bin/chromium"
if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
    pytest.skip(
        "no Chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
expect = sync_api.expect

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PNG = b"\x89PNG\r\n\x1a\n"
SILENT_AFTER = "2"  # seconds without a report before the coordinator calls a unit silent


@pytest.fixture
def region(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu", "skopje-coord"],
        extra_env={"BORDERLINK_FLOW_SILENT_AFTER": SILENT_AFTER},
    )
    yield nodes
    stop_all(nodes)


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_dashboard_live_in_a_browser(region: dict[str, NodeProc], tmp_path: Path) -> None:
    bar, bel, coord = region["bar-pcu"], region["belgrade-accu"], region["skopje-coord"]
    links = coord.json("dashboard")
    login, metrics = links["url"], links["metrics_url"]
    base, _, token = login.partition("/#login=")
    assert token and "?" not in login  # the token is never in what the browser sends

    # Without the session key or the bearer token: refused, and no browser is needed to see it.
    assert status_of(base + "/api/view") == 401
    assert status_of(metrics) == 401
    metrics_token = coord.home.joinpath("metrics.token").read_text().strip()
    assert status_of(metrics, {"Authorization": f"Bearer {metrics_token}"}) == 200

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            asked: list[Any] = []
            page.on("request", lambda r: asked.append(r) if "/api/" in r.url else None)

            # 1. The one-time link signs in, and the token leaves the address at once.
            page.goto(login)
            expect(page).to_have_url(base + "/")
            assert token not in page.url and "#" not in page.url, page.url
            for name in ("bar-pcu", "belgrade-accu"):
                expect(page.locator(f'#units tr[data-unit="{name}"]')).to_be_visible()
            # Both report within a few seconds (a unit that started before the coordinator
            # listened backs off once), and the page shows it without a reload.
            for name in ("bar-pcu", "belgrade-accu"):
                cell = page.locator(f'#units tr[data-unit="{name}"] [data-link]')
                expect(cell).to_have_attribute("data-link", "up", timeout=10000)
            expect(page.locator("#status")).to_have_class(re.compile(r"\blive\b"))
            # No cookie at all: the session key is this tab's, and goes only as a header.
            assert context.cookies() == []
            assert context.cookies(base) == []
            key = page.evaluate("sessionStorage.getItem('borderlink.session')")
            assert isinstance(key, str) and len(key) >= 43 and key != token
            assert status_of(base + "/api/view", {"Authorization": f"Bearer {key}"}) == 200
            assert status_of(base + "/api/view", {"Cookie": f"borderlink_session={key}"}) == 401
            # Peer-supplied text is shown with control and bidi characters made visible.
            assert page.evaluate("shown('a\\u202Eb\\u0000c\\u009F\\u2066')") == (
                "a\\u{202E}b\\u{0000}c\\u{009F}\\u{2066}"
            )
            # ... and invisible ones too (zero-width space, BOM, soft hyphen, a tag character),
            # which made two names look alike (attack review F8)
            assert page.evaluate("shown('k\\u200Botor\\uFEFF\\u00AD\\u{E0041}')") == (
                "k\\u{200B}otor\\u{FEFF}\\u{00AD}\\u{E0041}"
            )
            assert page.evaluate("shown('a\\u034Fb\\u3164c\\uFE0Fd\\u{E0100}')") == (
                "a\\u{034F}b\\u{3164}c\\u{FE0F}d\\u{E0100}"
            )

            # 2. The same link, used up, is refused in a second page of the same browser, which
            # gets no session from the first (sessionStorage is per tab) and no cookie.
            second = context.new_page()
            second.goto(login)
            expect(second).to_have_url(base + "/")
            expect(second.locator("#signin")).to_be_visible()
            expect(second.locator("#signin-text")).to_contain_text("used already")
            expect(second.locator("#signin")).to_contain_text("borderlink dashboard")
            expect(second.locator("#units")).to_be_hidden()
            assert second.evaluate("sessionStorage.getItem('borderlink.session')") is None
            second.close()
            # A page opened without a link says how to get one.
            blank = context.new_page()
            blank.goto(base + "/")
            expect(blank.locator("#signin")).to_be_visible()
            expect(blank.locator("#signin")).to_contain_text("borderlink dashboard")
            blank.close()
            assert context.cookies() == []

            # 3. A message sent now appears in the live feed, with no reload.
            page.evaluate("window.__marker = 1")
            alert = tmp_path / "alert.json"
            alert.write_text(bar.cli("template", "seizure-alert").stdout)
            sent = bar.cli("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))
            msg_id = sent.stdout.splitlines()[0].strip()
            assert re.fullmatch(r"[0-9a-f]{32}", msg_id), sent.stdout
            row = page.locator(f'#feed tr[data-id="{msg_id}"]').first
            expect(row).to_be_visible(timeout=2000)
            expect(row.locator("td.msgid")).to_have_text(msg_id[:12])
            assert page.evaluate("window.__marker") == 1
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

            # A stream that breaks is opened again from the last event seen (Last-Event-ID,
            # sent by the page itself since its fetch() stream is no EventSource).
            page.wait_for_function("state.lastId !== null")
            with page.expect_request(lambda r: "/api/events" in r.url) as resumed:
                last = page.evaluate(
                    "(() => { const id = state.lastId; state.stream.abort(); return id; })()"
                )
            assert resumed.value.all_headers().get("last-event-id") == last
            expect(page.locator("#status")).to_have_class(re.compile(r"\blive\b"))
            expect(row).to_be_visible()

            # A filter reopens the stream with its query: only that unit's rows, still no reload.
            page.select_option("#f-unit", "bar-pcu")
            expect(page.locator('#units tr[data-unit="belgrade-accu"]')).to_have_count(0)
            expect(page.locator('#units tr[data-unit="bar-pcu"]')).to_be_visible()
            expect(row).to_be_visible()  # bar-pcu's own events stay in its feed
            page.click("#f-clear")
            expect(page.locator('#units tr[data-unit="belgrade-accu"]')).to_be_visible()
            assert page.evaluate("window.__marker") == 1

            # 4. A unit that stops goes silent: not up, and its row stands out.
            assert bel.stop() == 0
            unit = page.locator('#units tr[data-unit="belgrade-accu"]')
            expect(unit.locator("[data-link]")).to_have_attribute(
                "data-link", re.compile(r"^(silent|failing)$"), timeout=10000
            )
            expect(unit).to_have_class(re.compile(r"\bfailing\b"), timeout=10000)
            expect(page.locator("#alarms")).to_contain_text("belgrade-accu")
            assert page.evaluate("window.__marker") == 1

            # 5. A screenshot for a person to look at.
            shot = Path(os.environ.get("BORDERLINK_ARTIFACTS", tmp_path)) / "dashboard.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            data = shot.read_bytes()
            assert data.startswith(PNG) and len(data) > 1000
            shutil.copyfile(shot, "/tmp/dashboard.png")

            # 6. Every API call carried the key as a bearer header, none a cookie or the key in
            # its address; a reload keeps the tab's session (sessionStorage), still no cookie.
            calls = [r for r in asked if "/api/login" not in r.url]
            assert len(calls) >= 3, "the page made fewer API calls than streams it opened"
            for r in calls:
                headers = r.all_headers()
                assert headers.get("authorization") == f"Bearer {key}", r.url
                assert "cookie" not in headers and key not in r.url, r.url
            page.reload()
            expect(page.locator('#units tr[data-unit="bar-pcu"]')).to_be_visible()
            assert context.cookies() == []

            # 7. Signing out kills the key and leaves nothing of the session on screen.
            page.click("#logout")
            expect(page.locator("#signin")).to_be_visible()
            expect(page.locator("#units")).to_be_hidden()
            assert page.evaluate("sessionStorage.getItem('borderlink.session')") is None
            assert status_of(base + "/api/view", {"Authorization": f"Bearer {key}"}) == 401

            assert problems == [], problems
        finally:
            browser.close()
