"""Browser tests of streamgate's pages in headless Chromium (Debian's), driven by Playwright.

Run by tests/browser.rs against a `streamgate demo` it started:

    pages.py --url http://127.0.0.1:PORT --scenario map|queue|shadow --artifacts DIR [--docs DIR]

Every wait is bounded and says what it waited for; screenshots go to --artifacts (and to
--docs for the README when asked), and on failure `<scenario>-failure.png`. Exit 0 when
every check held; otherwise the failed check is printed and the exit code is 1.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

# Playwright counts in milliseconds; every wait below is generous for a loaded 2-core box.
SECOND = 1000


class Check:
    """Bounded waits on one page, failing with what was awaited and the page's state."""

    def __init__(self, page, state_js):
        self.page = page
        self.state_js = state_js

    def state(self):
        try:
            return self.page.evaluate(self.state_js)
        except PlaywrightError as e:
            return f"(page state unavailable: {e})"

    def wait(self, what, js, timeout_s, arg=None):
        start = time.monotonic()
        try:
            handle = self.page.wait_for_function(js, arg=arg, timeout=timeout_s * SECOND, polling=100)
        except PlaywrightError as e:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; page state: {self.state()}"
            ) from e
        print(f"  ok: {what} ({time.monotonic() - start:.1f} s)", flush=True)
        return handle.json_value()

    def holds(self, what, js, arg=None):
        value = self.page.evaluate(js, arg)
        assert value, f"{what} does not hold; page state: {self.state()}"
        print(f"  ok: {what}", flush=True)
        return value


def record_requests(page, requests):
    page.on("request", lambda r: requests.append(r.url))


def assert_same_origin(requests, origin):
    assert requests, "the page made no request at all"
    foreign = [u for u in requests if not (u.startswith(origin + "/") or u.startswith("data:"))]
    assert not foreign, f"requests left the page for another origin: {foreign}"
    print(f"  ok: all {len(requests)} requests went to {origin}", flush=True)


MAP_STATE = """() => ({taxis: mapState.taxis.size, frames: mapState.frames, expired: mapState.expired,
  removed: mapState.removed.slice(-5), firstFrameTaxis: mapState.firstFrameTaxis, drawn: mapState.drawn,
  draws: mapState.draws, drawMs: +mapState.drawMs.toFixed(2), outline: mapState.outline,
  expiring: mapState.expiring})"""


def map_scenario(page, origin, shots):
    """The map shows the taxis and they move; an expired taxi disappears; a reload shows all at once."""
    requests = []
    record_requests(page, requests)
    page.goto(origin + "/")
    check = Check(page, MAP_STATE)
    check.wait("taxis on the map", "() => window.mapState && mapState.taxis.size >= 20", 60)
    check.wait("the outline of Seoul loaded", "() => mapState.outline", 20)
    check.wait("the canvas drew the taxis", "() => mapState.draws > 2 && mapState.drawn >= 20", 20)
    before = page.evaluate("() => Object.fromEntries([...mapState.taxis].map(([k, t]) => [k, [t.lat, t.lng]]))")
    check.wait(
        "most taxis moved",
        """(before) => { let moved = 0;
            for (const [k, [lat, lng]] of Object.entries(before)) {
              const t = mapState.taxis.get(k); if (t && (t.lat !== lat || t.lng !== lng)) moved++; }
            return moved >= Object.keys(before).length / 2; }""",
        30,
        arg=before,
    )
    check.wait("the header counting the taxis", "() => +document.getElementById('nTaxis').textContent >= 20", 10)
    # One taxi in 25 takes breaks: taxi-0000 goes off duty 5 s after the demo started,
    # taxi-0025 15 s after, ...: the policy expires them 30 s of log time later.
    removed = check.wait(
        "a taxi on the map expired and removed",
        "() => mapState.removed.find(r => r.shown) || false",
        120,
    )
    assert int(removed["id"].removeprefix("taxi-")) % 25 == 0, f"only off-duty taxis expire, not {removed}"
    check.wait(
        f"{removed['id']} gone from the drawn map while the others stay",
        "(id) => !mapState.taxis.has(id) && mapState.taxis.size >= 20 && mapState.drawnIds.indexOf(id) < 0"
        " && mapState.drawn === mapState.taxis.size",
        10,
        arg=removed["id"],
    )
    # taxi-0025's break began 10 s after taxi-0000's: it is past 20 s of silence now or soon.
    check.wait("a taxi about to expire ringed in red", "() => mapState.expiring >= 1", 90)
    shots("map", page)
    page.reload()
    check.wait("the first frame after a reload", "() => window.mapState && mapState.frames >= 1", 30)
    check.holds("the first frame after a reload holds every taxi at once", "() => mapState.firstFrameTaxis >= 20")
    check.holds(
        f"{removed['id']} is not in the current state either",
        "(id) => !mapState.taxis.has(id) || mapState.taxis.get(id).timestamp > Date.now() - 30000",
        arg=removed["id"],
    )
    # 5,000 taxis more, straight into the page: still one canvas (no element per taxi),
    # and drawing a frame stays far below a frame's 16 ms budget times three.
    page.evaluate(
        """() => { const now = performance.now(), t = Date.now(), list = [];
          for (let i = 0; i < 5000; i++)
            list.push({mediaId: 'load-' + i, lat: 37.45 + (i % 100) * 0.0023, lng: 126.85 + Math.floor(i / 100) * 0.006, timestamp: t});
          ingest(list, now); lastArrival = now; }"""
    )
    draws = page.evaluate("mapState.draws")
    check.wait("5,000 more taxis drawn, 30 times", f"() => mapState.drawn >= 5000 && mapState.draws >= {draws + 30}", 60)
    cost = page.evaluate("mapState.drawMs")
    elements = page.evaluate("document.getElementsByTagName('*').length")
    print(f"  5,000+ taxis: {cost:.1f} ms of drawing a frame, {elements} elements in the page", flush=True)
    assert elements < 100, f"the page grew to {elements} elements with the taxis: draw them, do not add elements"
    assert cost < 50, f"drawing 5,000 taxis takes {cost:.1f} ms a frame"
    assert any(u == origin + "/ui/seoul.geojson" for u in requests), f"no outline requested: {requests}"
    assert_same_origin(requests, origin)
    print(f"  map: {check.state()}", flush=True)


QUEUE_STATE = """() => ({url: location.search, rank: document.getElementById('rank').textContent,
  ahead: document.getElementById('ahead').textContent, wait: document.getElementById('wait').textContent,
  banner: document.getElementById('banner').textContent, error: document.getElementById('joinError').textContent,
  log: [...document.querySelectorAll('#log li')].slice(0, 5).map(li => li.textContent)})"""

RANK = "() => { const r = +document.getElementById('rank').textContent; return r > 0 ? r : false; }"
ADMITTED = """() => getComputedStyle(document.getElementById('banner')).display !== 'none'
  && document.getElementById('banner').textContent === 'You may enter now'"""


def queue_scenario(page, origin, shots):
    """Join the queue: a new user at the back, whose rank falls until admitted; reloads show the state at once."""
    requests = []
    record_requests(page, requests)
    page.goto(origin + "/queue")
    check = Check(page, QUEUE_STATE)
    page.click("#join")
    page.wait_for_url("**/queue?user=u-*", timeout=30 * SECOND)
    user = page.evaluate("() => new URLSearchParams(location.search).get('user')")
    print(f"  ok: joined as {user}", flush=True)
    first = check.wait(f"{user}'s first rank", RANK, 30)
    assert first > 5, f"a newcomer joins at the back of a line of hundreds, not at rank {first}"
    check.holds(
        "the people ahead match the rank",
        "() => { const r = +document.getElementById('rank').textContent;"
        " return document.getElementById('ahead').textContent.startsWith((r - 1) + ' '); }",
    )
    lower = check.wait(f"{user}'s rank falling below {first}", f"() => {{ const r = ({RANK})(); return r && r < {first} ? r : false; }}", 60)
    check.wait("an estimated wait", "() => document.getElementById('wait').textContent.startsWith('about ')", 30)
    check.wait("the progress bar past 10 %", "() => parseFloat(document.getElementById('fill').style.width) > 10", 60)
    shots("queue", page)
    page.reload()
    again = check.wait("a rank at once after a reload", RANK, 20)
    assert again <= lower, f"after a reload the rank is the current one ({again}), not older than {lower}"
    check.wait(f"{user} admitted", ADMITTED, 120)
    check.holds("the progress bar is full", "() => document.getElementById('fill').style.width === '100%'")
    shots("queue-admitted", page)
    # Nothing more is ever sent to an admitted user: only the state on connect can show it.
    page.reload()
    check.wait("'admitted' at once after a reload", ADMITTED, 20)
    assert_same_origin(requests, origin)


SHADOW_STATE = """() => ({state: document.getElementById('state').textContent,
  reason: document.getElementById('reason').textContent, error: document.getElementById('error').textContent,
  counts: document.querySelectorAll('#counts tbody tr').length,
  sample: document.querySelectorAll('#sample tbody tr').length,
  line: document.querySelector('#chart polyline')?.getAttribute('points')})"""


def shadow_scenario(page, origin, shots):
    """The operators' shadow page: a wrong token says so; with the right one it follows a shadow's diff over time."""
    token = os.environ["STREAMGATE_ADMIN_TOKEN"]
    requests = []
    record_requests(page, requests)
    page.goto(origin + "/shadow")
    check = Check(page, SHADOW_STATE)
    page.fill("#token", "not-the-token-0123456789")
    page.click("#who button")
    check.wait("the refusal shown", "() => document.getElementById('error').textContent.includes('wrong admin token')", 20)
    page.fill("#token", token)
    page.click("#who button")
    check.wait("no shadow yet", "() => document.getElementById('state').textContent === 'none'", 20)
    # A candidate that releases every report of a frame, where the demo's keeps each taxi's newest.
    chain = {"policies": [
        {"plugin": "builtin:ordering", "config": {"window_ms": 1000}},
        {"plugin": "builtin:staleness", "config": {"max_age_ms": 30000}},
        {"plugin": "builtin:dedupe", "config": {"newest_per_frame": False}},
    ]}
    answer = page.evaluate(
        """async ([token, chain]) => { const r = await fetch('/admin/tenants/taxi/shadow', {method: 'POST',
             headers: {authorization: `Bearer ${token}`, 'content-type': 'application/json'}, body: JSON.stringify(chain)});
             return [r.status, await r.text()]; }""",
        [token, chain],
    )
    assert answer[0] == 200, f"starting a shadow: {answer}"
    check.wait("the shadow running", "() => document.getElementById('state').textContent === 'running'", 30)
    check.wait("the diff's counts", "() => document.querySelectorAll('#counts tbody tr').length >= 10", 30)
    check.wait("differences in the sample", "() => document.querySelectorAll('#sample tbody tr').length > 0", 60)
    check.wait(
        "the diff over time drawn (a line of several seconds)",
        "() => (document.querySelector('#chart polyline')?.getAttribute('points') || '').split(' ').length >= 3",
        60,
    )
    shots("shadow", page)
    assert_same_origin(requests, origin)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--scenario", choices=["map", "queue", "shadow"], required=True)
    ap.add_argument("--artifacts", required=True, type=Path)
    ap.add_argument("--docs", type=Path, help="also write the README's screenshots here")
    default_chromium = os.environ.get("STREAMGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    ap.add_argument("--chromium", default=default_chromium, help="Debian's chromium (never a downloaded one)")
    args = ap.parse_args()
    args.artifacts.mkdir(parents=True, exist_ok=True)

    def shots(name, page):
        path = args.artifacts / f"{name}.png"
        page.screenshot(path=str(path))
        print(f"  screenshot: {path}", flush=True)
        if args.docs and name in ("map", "queue"):
            args.docs.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.docs / f"{name}.png"))
            print(f"  screenshot for the README: {args.docs / f'{name}.png'}", flush=True)

    scenario = {"map": map_scenario, "queue": queue_scenario, "shadow": shadow_scenario}[args.scenario]
    print(f"{args.scenario}: {scenario.__doc__}", flush=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            scenario(page, args.url.rstrip("/"), shots)
            assert not errors, f"the page threw: {errors}"
        except (AssertionError, PlaywrightError) as e:
            path = args.artifacts / f"{args.scenario}-failure.png"
            try:
                page.screenshot(path=str(path))
                print(f"  failure screenshot: {path}", flush=True)
            except PlaywrightError as shot_error:
                print(f"  no failure screenshot: {shot_error}", flush=True)
            print(f"FAILED: {e}", flush=True)
            sys.exit(1)
        finally:
            browser.close()
    print(f"{args.scenario}: passed", flush=True)


if __name__ == "__main__":
    main()
