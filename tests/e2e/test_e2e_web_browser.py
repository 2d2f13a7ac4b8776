"""The public agenda in Chromium, served by the real bot, in both themes (simple, dsfr).

A reader opens the agenda, filters it with the form, opens a session and takes its
"add to my calendar" file. Every page must pass axe-core, load without a failed request,
console error or CSP refusal, start with a visible skip link on the first Tab, say
lang="fr", have one h1, and keep its sessions as a real list in reading order when the
stylesheets do not load. Screenshots of each page go to build/screenshots/web-<theme>-*.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import icalendar
import pytest
from playwright.async_api import Page, Route, expect

from bot.app import BotApp
from bot.devserver import DevHomeserver, free_port
from tests.browser import axe_violations, screenshot, watch
from tests.helpers import bot_config, paris, running

pytestmark = pytest.mark.e2e

PARIS = ZoneInfo("Europe/Paris")
SESSION_HREF = re.compile(r"^/seance/([a-z0-9]+)$")


def programme(today: date) -> list[dict[str, Any]]:
    """Sessions from tomorrow on (none today: the page's "ongoing" and "today" depend on
    the hour the suite runs), three of them about Grist within the week, one beyond."""
    return [
        {
            "uid": "grist-atelier@test",
            "summary": "Atelier Grist : vos tableaux & <données>",
            "start": paris(today + timedelta(days=1), 14),
            "end": paris(today + timedelta(days=1), 15, 30),
            "location": "Salle B, 20 avenue de Ségur",
            "description": "Prise en main de Grist.\\n\\nApportez vos fichiers.",
            "url": "https://grist.numerique.gouv.fr",
            "attendee": "Ana Lopez",
        },
        {
            "uid": "superset@test",
            "summary": "Webinaire Superset",
            "start": paris(today + timedelta(days=2), 10),
            "end": paris(today + timedelta(days=2), 11),
            "location": "https://webinaire.numerique.gouv.fr/superset",
        },
        {
            "uid": "grist-cafe@test",
            "summary": "Café Grist",
            "start": paris(today + timedelta(days=4), 9, 30),
            "end": paris(today + timedelta(days=4), 10),
        },
        {
            "uid": "journee@test",
            "summary": "Journée BlueHats",
            "all_day": today + timedelta(days=5),
        },
        {
            "uid": "grist-loin@test",
            "summary": "Grist avancé",
            "start": paris(today + timedelta(days=12), 14),
            "end": paris(today + timedelta(days=12), 16),
        },
    ]


def escape(text: str) -> str:
    """An iCalendar TEXT value; the fixtures write their line breaks as `\\n` already."""
    return text.replace(",", "\\,").replace(";", "\\;")


def write_ics(path: Path, events: list[dict[str, Any]]) -> Path:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//tests//web//FR"]
    for e in events:
        lines += ["BEGIN:VEVENT", f"UID:{e['uid']}", "DTSTAMP:20260101T000000Z"]
        if "all_day" in e:
            lines.append(f"DTSTART;VALUE=DATE:{e['all_day']:%Y%m%d}")
        else:
            lines.append(f"DTSTART:{e['start'].astimezone(UTC):%Y%m%dT%H%M%SZ}")
            lines.append(f"DTEND:{e['end'].astimezone(UTC):%Y%m%dT%H%M%SZ}")
        for key in ("summary", "location", "description", "url"):
            if key in e:
                lines.append(f"{key.upper()}:{escape(e[key])}")
        if "attendee" in e:
            lines.append(f"ATTENDEE;CN={e['attendee']}:mailto:speaker@example.org")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


@dataclass
class Site:
    url: str
    theme: str
    today: date


@pytest.fixture(params=["simple", "dsfr"])
async def site(
    request: pytest.FixtureRequest, synapse: DevHomeserver, tmp_path: Path
) -> AsyncIterator[Site]:
    theme: str = request.param
    today = datetime.now(PARIS).date()
    ics = write_ics(tmp_path / "agenda.ics", programme(today))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg, _ = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(ics)],
        web={"http": f"127.0.0.1:{port}", "public_url": url, "theme": theme},
    )
    async with running(BotApp(cfg)):
        yield Site(url, theme, today)


def readable(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n    at {json.dumps(v['targets'])}"
        for v in violations
    )


async def check_page(page: Page, site: Site, name: str) -> None:
    """What every page owes its readers (the page is loaded, watched from before)."""
    assert await page.get_attribute("html", "lang") == "fr"
    assert await page.locator("h1").count() == 1
    violations = await axe_violations(page)
    assert violations == [], f"axe-core on {name} ({site.theme}):\n{readable(violations)}"
    await screenshot(page, f"web-{site.theme}-{name}")

    # The first Tab from the top of the page reaches the skip link, drawn on screen
    # with a visible focus ring; Enter then moves the focus to the main content.
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await page.keyboard.press("Tab")
    focused = page.locator(":focus")
    await expect(focused).to_have_attribute("href", "#contenu")
    await expect(focused).to_have_accessible_name("Aller au contenu")
    await expect(focused).to_be_in_viewport()
    ring = await focused.evaluate(
        "el => { const s = getComputedStyle(el);"
        " return {visible: el.matches(':focus-visible'), style: s.outlineStyle,"
        " width: parseFloat(s.outlineWidth), shadow: s.boxShadow}; }"
    )
    assert ring["visible"], ring
    assert (ring["style"] != "none" and ring["width"] >= 2) or ring["shadow"] != "none", ring
    box = await focused.bounding_box()
    assert box is not None and box["width"] > 20 and box["height"] > 10, box
    await page.keyboard.press("Enter")
    await expect(page.locator(":focus")).to_have_attribute("id", "contenu")


async def sids_listed(page: Page) -> list[str]:
    """The sessions' ids in the page's list items, in document (reading) order."""
    hrefs = await page.locator("main ul.sessions > li a[href^='/seance/']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    return [SESSION_HREF.match(h).group(1) for h in hrefs]  # type: ignore[union-attr]


async def unstyled_list(reader: Page, url: str) -> list[str]:
    """The sessions of `url` as a reader without the stylesheets gets them: list items
    (shown as such by the browser's defaults), one per session, in order. In a page of
    its own: the refused stylesheets are not the watched page's problems."""

    async def refuse(route: Route) -> None:
        await route.abort()

    page = await reader.context.new_page()
    await page.route("**/*.css", refuse)
    try:
        await page.goto(url)
        # Proof that no stylesheet applied: the skip link sits in the flow.
        assert await page.locator("a[href='#contenu']").evaluate(
            "a => getComputedStyle(a).position"
        ) in ("static", "relative")
        items = page.locator("main ul.sessions > li")
        displays = await items.evaluate_all("lis => lis.map(li => getComputedStyle(li).display)")
        assert displays and set(displays) == {"list-item"}, displays
        assert await items.count() == await page.locator("main a[href^='/seance/']").count()
        return await sids_listed(page)
    finally:
        await page.close()


async def feed_sids(page: Page, url: str) -> list[str]:
    response = await page.request.get(url)
    assert response.ok, response.status
    calendar = icalendar.Calendar.from_ical(await response.body())
    return [str(e["UID"]).split("@")[0] for e in calendar.walk("VEVENT")]


async def test_reader_browses_agenda_opens_session_and_takes_its_calendar(
    page: Page, site: Site
) -> None:
    problems = watch(page)

    # The whole agenda: every session ahead, by day, in the order of the calendar feed.
    await page.goto(f"{site.url}/")
    await check_page(page, site, "agenda")
    everything = await sids_listed(page)
    assert len(everything) == 5
    assert everything == await feed_sids(page, f"{site.url}/agenda.ics")
    assert await page.locator("main h2").count() == 5  # one heading per day
    assert await unstyled_list(page, f"{site.url}/") == everything

    # The form, as a reader uses it: words, a period, the button.
    await page.goto(f"{site.url}/")
    await page.locator("#q").fill("grist")
    await page.locator("#periode").select_option("semaine")
    await page.get_by_role("search").get_by_role("button", name="Filtrer").click()
    await page.wait_for_url(re.compile(r"/\?"))
    assert parse_qs(urlsplit(page.url).query) == {"q": ["grist"], "periode": ["semaine"]}
    await check_page(page, site, "filtered")
    week = await sids_listed(page)
    assert len(week) == 2
    assert week == [sid for sid in everything if sid in week]  # same order
    assert week == await feed_sids(page, f"{site.url}/agenda.ics?periode=semaine&q=grist")
    assert await page.locator("#q").input_value() == "grist"  # the filter is shown back
    assert await page.locator("#periode").input_value() == "semaine"
    filtered = page.url
    assert await unstyled_list(page, filtered) == week

    # A session, reached by its link as a reader would.
    first = page.locator("main ul.sessions > li a[href^='/seance/']").first
    title = (await first.inner_text()).strip()
    assert title == "Atelier Grist : vos tableaux & <données>"
    await first.click()
    await page.wait_for_url(f"{site.url}/seance/{week[0]}")
    await check_page(page, site, "session")
    assert (await page.locator("h1").inner_text()).strip() == title
    assert "Salle B, 20 avenue de Ségur" in await page.locator("main dl").inner_text()
    assert "Ana Lopez" in await page.locator("main dl").inner_text()
    if site.theme == "dsfr":
        # The back link's arrow is drawn from the icons' stylesheet, not dsfr.min.css.
        arrow = await page.locator("main a[href='/']").first.evaluate(
            "a => getComputedStyle(a, '::before').maskImage"
        )
        assert arrow.startswith("url("), arrow

    # "Add to my calendar": a calendar file with this very session.
    add = page.get_by_role("link", name="Ajouter à mon agenda")
    await expect(add).to_have_attribute("download", "")
    href = await add.get_attribute("href")
    assert href == f"{site.url}/seance/{week[0]}.ics"
    response = await page.request.get(href)
    assert response.ok, response.status
    assert response.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(await response.body())
    (event,) = calendar.walk("VEVENT")
    assert str(event["UID"]).startswith(f"{week[0]}@")
    assert str(event["SUMMARY"]) == title
    start = paris(site.today + timedelta(days=1), 14)
    assert event["DTSTART"].dt == start
    assert event["DTEND"].dt == start + timedelta(minutes=90)

    # The agenda page's subscribe link is the same feed, for calendar apps.
    await page.goto(f"{site.url}/")
    webcal = page.locator("main a[href^='webcal://']")
    # Words and link stay apart ("à jour : s'abonner"), whatever the template's lines.
    assert re.search(r":\s+\S", await page.locator("p.subscribe").inner_text())
    await expect(webcal).to_have_attribute(
        "href", f"webcal://127.0.0.1:{urlsplit(site.url).port}/agenda.ics"
    )

    assert problems.found == []
