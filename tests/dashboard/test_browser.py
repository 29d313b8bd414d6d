"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, which .ci/run installs when
it is missing) driven by Playwright, against an embedded mock on the manual clock.

Playwright rather than Selenium: it drives the system Chromium through `executable_path` with no
driver binary to keep in step with the browser (Selenium needs Debian's chromium-driver of the very
same version), its async API runs on the test's own event loop beside the embedded mock, and its
`expect` assertions wait for the page to catch up with a push instead of sleeping. Its wheel ships
its own Node driver, so nothing is downloaded at run time (`playwright install` is never needed).

The page and the API each apply a scenario and make an allocation; then what the page shows is
compared with what `/_admin/state` (and `/_admin/leaks`, `/_admin/journal`) say. A screenshot is
written to reports/dashboard.png (docs/img/dashboard.png is a copy of one).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from harness.control_plane import ControlPlane
from mock_server import MockHostedAI
from mock_server.dashboard.latency import LatencyWindow
from tests.conftest import ALLOCATE_GEMMA, ALLOCATE_QWEN

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "reports" / "dashboard.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless, as root in CI, and quiet: no first-run, sync, component or background network traffic
# (the machine has no network but loopback).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

# A ceiling, not a wait: `expect` returns as soon as the page shows what it asks for. CI machines are
# shared, and a push or a click can take seconds to land there.
expect.set_options(timeout=20_000)

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on PATH: `apt-get install chromium` (.ci/run installs it in CI)"
    ),
    # One browser for the module (a launch costs a second or more), so one event loop for it too.
    pytest.mark.asyncio(loop_scope="module"),
]


class SteppedTime:
    """The latency window's clock, moved by the test: the charts get a shape without real waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def number(value: float) -> str:
    """A number as the page writes it (en-US grouping, at most two decimals)."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def _traffic(mock: MockHostedAI, time: SteppedTime) -> None:
    """Allocations and inferences over 30 (stepped) seconds, so every panel has something to show."""
    async with aiohttp.ClientSession(base_url=mock.url, headers={"Authorization": f"Bearer {mock.api_key}"}) as http:
        ids = []
        for tflops in (90, 180, 400, 30):
            body = {**ALLOCATE_QWEN, "requirements": {**ALLOCATE_QWEN["requirements"], "tflops": tflops}}
            async with http.post("/v1/allocate", json={**body, "ttl_seconds": 600}) as resp:
                assert resp.status == 201, await resp.text()
                ids.append((await resp.json())["allocation_id"])
        for i in range(60):
            time.now = i / 2
            prompt = "Explain overcommit. " * (1 + i % 12)
            body = {"allocation_id": ids[i % len(ids)], "prompt": prompt, "max_tokens": 16 + 8 * (i % 7)}
            async with http.post("/v1/inference", json=body) as resp:
                assert resp.status == 200, await resp.text()
        async with http.delete(f"/v1/allocate/{ids[-1]}") as resp:
            assert resp.status == 204


def _watch(page: Page, problems: list[str], urls: list[str]) -> None:
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", console)
    page.on("request", lambda request: urls.append(request.url))


async def _sign_in_with_the_keyboard(page: Page, token: str) -> None:
    # The page opens with the token field focused; Shift+Tab reaches the skip link, Tab comes back.
    await expect(page.locator("#token")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(page.locator("a.skip")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.locator("#token")).to_be_focused()
    await page.keyboard.type(token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#connection")).to_have_text(re.compile(r"^Live"))


async def _allocate_through_the_page(page: Page, api_key: str) -> str:
    await page.fill("#api-key", api_key)
    await page.select_option("#allocate-pool", ALLOCATE_GEMMA["pool_id"])
    await page.fill("#allocate-model", ALLOCATE_GEMMA["requirements"]["model"])
    await page.fill("#allocate-tflops", str(ALLOCATE_GEMMA["requirements"]["tflops"]))
    await page.fill("#allocate-vram", str(ALLOCATE_GEMMA["requirements"]["vram_mb"]))
    await page.fill("#allocate-ttl", "300")
    await page.get_by_role("button", name="Allocate", exact=True).click()
    result = page.locator("#action-result")
    await expect(result).to_have_text(re.compile(r"^Allocated alloc_\w+ for dev on gpu-pool-2-gpu-\d+\.$"))
    found = re.search(r"alloc_\w+", await result.inner_text())
    assert found
    return found.group(0)


async def _compare_with_the_state(page: Page, admin: ControlPlane) -> dict[str, Any]:
    state = await admin.state()
    rules = page.locator("#rules tbody th")
    await expect(rules).to_have_text([rule["id"] for rule in state["rules"]])
    await expect(page.locator("#clock")).to_contain_text(f"Simulated time {state['clock']['now']}")
    for pool in state["pools"]:
        row = page.locator(f'#pools tbody tr[data-key="{pool["pool_id"]}"]')
        compute = f"{number(pool['tflops_allocated'])} / {number(pool['tflops_total'])} ("
        vram = f"{number(pool['vram_mb_allocated'])} / {number(pool['vram_mb_total'])} ("
        await expect(row.locator("td.compute")).to_contain_text(compute)
        await expect(row.locator("td.vram")).to_contain_text(vram)
        await expect(row.locator("td.active")).to_have_text(str(pool["allocations_active"]))
    newest_first = state["allocations"][::-1]  # the state lists them in creation order
    await expect(page.locator("#allocations tbody th")).to_have_count(len(newest_first))
    for alloc in newest_first:
        row = page.locator(f'#allocations tbody tr[data-key="{alloc["allocation_id"]}"]')
        await expect(row.locator("td.tenant")).to_have_text(alloc["tenant_id"])
        await expect(row.locator("td.model")).to_have_text(alloc["model"])
        await expect(row.locator(f"td.state-{alloc['state']}")).to_contain_text(alloc["state"])
    for gpu in state["gpus"]:
        row = page.locator(f'#gpus tbody tr[data-key="{gpu["gpu_id"]}"]')
        await expect(row.locator("td").nth(4)).to_have_text(str(len(gpu["allocations"])))
    leaks = await admin.leaks()
    await expect(page.locator("#leak-summary")).to_contain_text(f"{len(leaks)} leaks at 0 s grace")
    # Every leak is highlighted where its allocation is listed, and no other allocation is.
    await expect(page.locator("#allocations tbody tr.leak th")).to_have_text(
        [a["allocation_id"] for a in newest_first if a["allocation_id"] in {leak["allocation_id"] for leak in leaks}]
    )
    journal = await admin.journal()
    await expect(page.locator("#journal tbody th").first).to_have_text(str(journal[-1]["seq"]))
    return dict(state)


async def test_the_dashboard_shows_what_the_control_plane_says(browser: Browser) -> None:
    time = SteppedTime()
    async with MockHostedAI(clock="manual", seed=14) as mock, ControlPlane(mock.url, mock.admin_token or "") as admin:
        mock.state.latency = LatencyWindow(time)
        await _traffic(mock, time)
        page = await browser.new_page(viewport={"width": 1366, "height": 900})
        problems: list[str] = []
        urls: list[str] = []
        _watch(page, problems, urls)
        await page.goto(f"{mock.url}/_admin/ui")
        await expect(page.locator("#login-panel")).to_be_visible()
        await _sign_in_with_the_keyboard(page, mock.admin_token or "")

        # Through the page: a scenario, an allocation, the clock.
        await page.select_option("#scenario", "gpu-xid")
        await page.get_by_role("button", name="Apply the scenario").click()
        await expect(page.locator("#action-result")).to_have_text("Applied the scenario gpu-xid.")
        mine = await _allocate_through_the_page(page, mock.api_key)
        # Through the API: another scenario, another tenant's allocation.
        await admin.apply_scenario("brownout")
        team_b = {"Authorization": f"Bearer {mock.api_key_for('team-b')}"}
        async with (
            aiohttp.ClientSession(headers=team_b) as http,
            http.post(f"{mock.url}/v1/allocate", json=ALLOCATE_GEMMA) as resp,
        ):
            assert resp.status == 201
            theirs = (await resp.json())["allocation_id"]
        await page.get_by_role("button", name="+1 min").click()
        await expect(page.locator("body")).to_have_attribute("data-clock", "60")

        state = await _compare_with_the_state(page, admin)
        assert {mine, theirs} <= {a["allocation_id"] for a in state["allocations"]}
        assert {r["source"] for r in state["rules"]} == {"scenario:gpu-xid", "scenario:brownout"}
        await expect(page.locator("#latency-summary")).to_contain_text("60 inferences answered")

        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        await page.close()
    assert problems == []
    assert {url.split("/_admin")[0].split("/v1")[0] for url in urls} == {mock.url}
    assert not [url for url in urls if (mock.admin_token or "") in url]


async def test_the_page_is_labelled_for_assistive_technology_and_asks_again_for_a_wrong_token(
    browser: Browser,
) -> None:
    async with MockHostedAI(clock="manual") as mock:
        page = await browser.new_page()
        await page.goto(f"{mock.url}/_admin/ui")
        await page.fill("#token", "not-the-token")
        await page.press("#token", "Enter")
        await expect(page.locator("#login-error")).to_have_text("The mock refused that token.")
        await expect(page.locator("#token")).to_be_focused()
        await page.fill("#token", mock.admin_token or "")
        await page.press("#token", "Enter")
        await expect(page.locator("#connection")).to_have_text(re.compile(r"^Live"))
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll("input, select")]
                .filter((control) => control.labels.length === 0 && !control.getAttribute("aria-label"))
                .map((control) => control.id)"""
        )
        assert unlabelled == []
        tables = await page.evaluate(
            """() => [...document.querySelectorAll("table")].map((table) => [
                table.id, Boolean(table.caption && table.caption.textContent.trim()),
                [...table.tHead.rows[0].cells].every((cell) => cell.tagName === "TH" && cell.scope === "col")])"""
        )
        assert len(tables) == 6
        assert all(captioned and headed for _, captioned, headed in tables), tables
        # Bands read as text too: every cell of a GPU map carries its band's character.
        cells = await page.locator(".map > span").all_inner_texts()
        assert len(cells) == 12  # the default cluster's GPUs, a cell each
        assert set(cells) <= {".", "1", "2", "3", "4", "x"}
        # Signing out forgets the token: a reload asks for it again.
        await page.get_by_role("button", name="Forget the token").click()
        await page.reload()
        await expect(page.locator("#login-panel")).to_be_visible()
        await page.close()
