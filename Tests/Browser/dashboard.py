"""Opens the report API's dashboard in headless Chromium (Debian's, driven by Playwright) and prints, as JSON, what
the page shows: the chart's data (visits and unique visitors), the heat map's cells, the members' table and the
summary, which the Swift test that runs this compares with the API's own answers; what a keyboard reaches, tabbing
through the page; and the serious and critical violations axe-core (the engine of browsers' own accessibility audits,
bundled by axe-playwright-python) finds at a desktop's and a phone's size, with the token asked for and with the
reports shown.

    python3 dashboard.py BASE_URL TOKEN ZONE RANGE SPACE SCREENSHOT
"""
import json
import sys
import time

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


def violations(page, state):
    """The serious and critical violations axe-core finds on the page at a desktop's and a phone's size."""
    found = []
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for violation in Axe().run(page).response["violations"]:
            if violation["impact"] in ("serious", "critical"):
                found.append({"state": f"{state}, {size}", "id": violation["id"], "impact": violation["impact"],
                              "targets": [node["target"] for node in violation["nodes"]]})
    page.set_viewport_size(DESKTOP)
    return found


def keyboard_walk(page, steps=60):
    """What Tab reaches, in order, from the top of the page: each element's id, or its role and label."""
    page.evaluate("() => document.activeElement?.blur()")
    reached = []
    for _ in range(steps):
        page.keyboard.press("Tab")
        reached.append(page.evaluate(
            """() => {
                const element = document.activeElement;
                if (!element || element === document.body) return null;
                return element.id || element.dataset.report && ('csv:' + element.dataset.report)
                    || (element.getAttribute('role') ?? element.tagName.toLowerCase()) + ':'
                        + (element.getAttribute('aria-labelledby') ?? '');
            }"""))
    return [element for element in reached if element]


def wait_until(page, expression, timeout=20):
    """Polls `expression` in the page. Playwright's own wait_for_function evaluates a string with `new Function`,
    which the page's Content-Security-Policy forbids; `evaluate` runs outside it."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {expression}")
        time.sleep(0.1)


def main(base_url, token, zone, range_, space, screenshot):
    with sync_playwright() as playwright:
        # The system's browser: nothing is downloaded. Root (CI) needs --no-sandbox.
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport=DESKTOP)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # The 401s before the token is given are expected: the page answers them by asking for it.
        page.on("console", lambda message: message.type == "error" and "status of 401" not in message.text
                and errors.append(message.text))
        page.goto(f"{base_url}/?zone={zone}&range={range_}&space={space}")
        # With API_TOKENS_FILE set, the page asks for the token; typed in and submitted from the keyboard.
        page.locator("#token").wait_for(state="visible", timeout=10_000)
        axe = violations(page, "token asked for")
        page.locator("#token").fill(token)
        page.keyboard.press("Enter")
        try:
            wait_until(page, "document.body.dataset.loaded !== undefined")
            wait_until(page, "typeof Chart !== 'undefined' && Chart.getChart('daily-chart') !== undefined")
        except Exception:
            page.screenshot(path=screenshot, full_page=True)
            print("the page did not load: errors", errors, "shown", page.locator("#error").text_content(),
                  file=sys.stderr)
            raise
        shown = page.evaluate(
            """() => {
                const chart = Chart.getChart('daily-chart');
                const heat = {};
                for (const td of document.querySelectorAll('#heatmap td')) {
                    (heat[td.dataset.weekday] ??= {})[td.dataset.hour] = Number(td.textContent);
                }
                const members = [...document.querySelectorAll('#members tbody tr')].map((row) =>
                    [...row.cells].map((cell) => cell.textContent));
                const summary = [...document.querySelectorAll('#summary dd')].map((dd) => dd.textContent);
                const freshness = document.getElementById('freshness').textContent;
                return {
                    query: JSON.parse(document.body.dataset.loaded),
                    labels: chart.data.labels,
                    data: chart.data.datasets[0].data,
                    unique: chart.data.datasets[1]?.data ?? null,
                    heat,
                    members,
                    summary,
                    freshness,
                    lastFolded: document.getElementById('freshness').dataset.lastFolded,
                    error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
                    uniqueError: document.getElementById('unique-error').hidden
                        ? null : document.getElementById('unique-error').textContent,
                };
            }"""
        )
        shown["pageErrors"] = errors
        shown["keyboard"] = keyboard_walk(page)
        shown["axe"] = axe + violations(page, "reports shown")
        page.screenshot(path=screenshot, full_page=True)
        # Narrow, as on a phone: the page must still lay out without errors.
        page.set_viewport_size(PHONE)
        page.screenshot(path=screenshot.replace(".png", "-phone.png"), full_page=True)
        browser.close()
    print(json.dumps(shown))


if __name__ == "__main__":
    main(*sys.argv[1:7])
