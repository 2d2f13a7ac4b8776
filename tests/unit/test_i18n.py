"""One template tree, gettext catalogs: every message translated, operators' overrides kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from bot.agenda.export import to_ics
from bot.agenda.model import Session
from bot.feeds import parse_feed
from bot.render import Renderer, catalog_path, data_text
from tests.unit.agenda.test_ics import cal, parse

ROOT = Path(__file__).resolve().parent.parent.parent
MAPPING = ROOT / "templates" / "locale" / "babel.cfg"
PARIS = ZoneInfo("Europe/Paris")


def extracted() -> Catalog:
    """What `pybabel extract -F templates/locale/babel.cfg bot templates` finds."""
    with MAPPING.open() as f:
        method_map, options_map = parse_mapping_cfg(f, str(MAPPING))
    catalog = Catalog()
    for top in ("bot", "templates"):
        found = extract_from_dir(
            ROOT / top, method_map, options_map, comment_tags=("Translators:",)
        )
        for filename, lineno, message, comments, context in found:
            catalog.add(message, None, [(f"{top}/{filename}", lineno)], comments, context=context)
    return catalog


def shipped(language: str) -> Catalog:
    with catalog_path(language).open("rb") as po:
        return read_po(po, locale=language)


def label(message: object) -> str:
    msgid = getattr(message, "id", "")
    context = getattr(message, "context", None)
    text = msgid[0] if isinstance(msgid, tuple) else str(msgid)
    return f"[{context}] {text}" if context else text


@pytest.fixture(scope="module")
def wanted() -> Catalog:
    catalog = extracted()
    assert len(catalog) > 100  # the extraction did find the templates and the code
    return catalog


@pytest.mark.parametrize("language", ["fr", "en"])
def test_catalog_holds_exactly_the_extracted_messages(wanted: Catalog, language: str) -> None:
    catalog = shipped(language)
    missing = [label(m) for m in wanted if m.id and catalog.get(m.id, context=m.context) is None]
    obsolete = [label(m) for m in catalog if m.id and wanted.get(m.id, context=m.context) is None]
    assert not missing, f"run pybabel extract + update (README): missing {missing}"
    assert not obsolete, f"remove obsolete messages (pybabel update --ignore-obsolete): {obsolete}"
    assert not catalog.obsolete, f"#~ entries left: {[label(m) for m in catalog.obsolete.values()]}"
    for m in wanted:
        if m.id:
            # Singular and plural forms both as in the code.
            assert catalog.get(m.id, context=m.context).id == m.id, label(m)


def test_every_message_has_a_french_translation(wanted: Catalog) -> None:
    catalog = shipped("fr")
    untranslated = [
        label(m)
        for m in catalog
        if m.id and (m.fuzzy or not m.string or (isinstance(m.string, tuple) and not all(m.string)))
    ]
    assert not untranslated, f"fr: untranslated or fuzzy: {untranslated}"
    assert catalog.num_plurals == 2
    problems = [(label(m), errors) for m, errors in catalog.check()]
    assert not problems  # placeholders (%(name)s) kept, plural forms complete


def session(title: str, **kw: object) -> Session:
    start = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    return Session(title=title, start=start, end=start + timedelta(hours=1), **kw)  # type: ignore[arg-type]


def entry(actor: str, action: str, target: str, detail: str = "Grist") -> tuple[object, str]:
    audit = SimpleNamespace(
        actor=actor, action=action, target=target, detail=detail, at=0, room_id=""
    )
    return audit, "lundi 30 novembre 10h00"


def test_an_erased_person_shows_as_removed_in_the_mentor_log() -> None:
    entries = [
        entry("", "erase-self", ""),
        entry("@mod:x.org", "remove", "", "*"),
        entry("(personne retirée)", "add", "@a:x.org"),  # as bot.storage writes it today
    ]
    fr = Renderer("fr", PARIS).render("mentor_log", entries=entries, prefix="!")
    assert fr.body.splitlines()[1:] == [
        "• lundi 30 novembre 10h00 — (personne retirée) : s'est retiré·e de l'annuaire",
        "• lundi 30 novembre 10h00 — @mod:x.org : retire (personne retirée)",
        "• lundi 30 novembre 10h00 — (personne retirée) : ajoute @a:x.org (Grist)",
    ]
    assert "<li>lundi 30 novembre 10h00 — @mod:x.org : retire (personne retirée)</li>" in fr.html
    en = Renderer("en", PARIS).render("mentor_log", entries=entries, prefix="!")
    assert "— (person removed): left the directory" in en.body
    assert "— @mod:x.org: removes (person removed)" in en.body


def test_untitled_feed_posts_and_events() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>
        <item><link>https://example.org/a</link></item></channel></rss>"""
    (post,) = parse_feed(feed)
    assert post.title == ""  # named when shown, in the bot's language
    fr = Renderer("fr", PARIS).render("feed_entry", title=post.title, link=post.link, prefix="!")
    assert fr.body.splitlines()[0] == "📰 Nouvelle publication BlueHats : « (sans titre) »"
    en = Renderer("en", PARIS).render("feed_entry", title="", link="", prefix="!")
    assert en.body == '📰 New BlueHats post: "(untitled)"'
    # A calendar event's name is part of its id: always the default language.
    (event,) = parse(cal("UID:x\r\nDTSTART:20261201T130000Z"))
    assert event.title == data_text("(untitled)") == "(sans titre)"


def test_durations_and_dates_in_both_languages() -> None:
    fr, en = Renderer("fr", PARIS), Renderer("en", PARIS)
    assert fr.duration(timedelta(minutes=15)) == "15 minutes"
    assert fr.duration(timedelta(hours=2)) == "2 heures"  # a plain space, as "dans 2 heures"
    assert fr.duration(timedelta(seconds=10)) == "1 minute"
    assert en.duration(timedelta(days=2)) == "2 days"
    first = datetime(2026, 12, 1, 8, 5, tzinfo=UTC)
    assert fr.day_label(first.date()) == "mardi 1er décembre"
    assert fr.day_label(first.date(), today=first.date().replace(year=2025)) == (
        "mardi 1er décembre 2026"
    )
    assert en.day_label(first.date()) == "Tuesday 1 December"
    assert (fr.time_label(first), en.time_label(first)) == ("09h05", "09:05")


def test_internal_error_without_templates() -> None:
    assert Renderer("fr", PARIS).internal_error("ab12").body == "Erreur interne (réf. ab12)."
    assert Renderer("en", PARIS).internal_error("ab12").html == "Internal error (ref. ab12)."


def test_calendar_export_labels_from_the_catalog() -> None:
    s = session("Atelier", speakers=("Ana",), event="Journées BlueHats")
    now = datetime(2026, 11, 30, tzinfo=UTC)
    fr = to_ics([s], tz=PARIS, now=now).decode()
    assert "X-WR-CALNAME:Agenda BlueHats" in fr
    assert "Intervenants : Ana" in fr and "Événement : Journées BlueHats" in fr
    en = to_ics([s], tz=PARIS, now=now, language="en").decode()
    assert "X-WR-CALNAME:BlueHats agenda" in en and "Speakers: Ana" in en


def test_operators_override_templates_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "unknown.txt.j2").write_text("Commande {{ command }} ? Voir {{ prefix }}aide.")
    (tmp_path / "fr").mkdir()
    # The per-language layout of the former template trees still wins.
    (tmp_path / "fr" / "refused.txt.j2").write_text("Réservé : {{ command }}")
    (tmp_path / "refused.txt.j2").write_text("not this one")
    # An override may also use the catalog.
    (tmp_path / "error.txt.j2").write_text("{% trans %}Incomplete command.{% endtrans %} {{ ref }}")
    renderer = Renderer("fr", PARIS, tmp_path)
    assert renderer.render("unknown", command="x", prefix="!").body == "Commande x ? Voir !aide."
    assert renderer.render("refused", command="x", prefix="!", community=False).body == (
        "Réservé : x"
    )
    assert renderer.render("error", ref="r1").body == "Commande incomplète. r1"
    # Not overridden: the packaged file, HTML half included.
    unknown = renderer.render("unknown", command="<x>", prefix="!")
    assert (
        unknown.html
        == "Je ne connais pas la commande « !&lt;x&gt; ». Tapez !aide pour la liste des commandes."
    )
    english = Renderer("en", PARIS, tmp_path)
    assert english.render("refused", command="x", prefix="!", community=False).body == (
        "not this one"
    )


def test_translations_keep_html_escaping() -> None:
    renderer = Renderer("fr", PARIS)
    message = renderer.render("refused", command='<b>"x"</b>', prefix="!", community=True)
    assert message.body == (
        'Désolé, « !<b>"x"</b> » est réservée aux modérateurs de la communauté.'
    )
    assert message.html == (
        "Désolé, « !&lt;b&gt;&#34;x&#34;&lt;/b&gt; » est réservée aux modérateurs de la communauté."
    )
