"""The mentor directory: who can help with which free software.

    !mentors [sujet]                          anyone
    !mentor proposer sujet1, sujet2           anyone (a moderator validates)
    !mentor retirer-moi                       the mentor: removed everywhere
    !mes-donnees                              anyone: what the bot holds about them
    !mentor ajouter @user:serveur s1, s2      moderators
    !mentor retirer @user:serveur [sujet]     moderators
    !mentor demandes | valider @user | journal   moderators

Topics are compared by `bot.textnorm.fold` (case, accents, spaces): the one
normalisation used everywhere. A new topic is checked (`topic_ok`): 1 to
MAX_TOPIC characters, letters of any script (with their accents), digits,
spaces, apostrophes and - + . # (C++, C#, .NET, Node.js), at least one
letter or digit. Topics stored before that rule stay as they are: listed,
found, removable.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, replace
from urllib.parse import quote

from bot.chat import UnknownUser
from bot.commands.core import Context, Problem, UsageError, command, echo
from bot.config import MXID_RE
from bot.db.mentors import MentorTopic
from bot.i18n import N_
from bot.permissions import Role
from bot.render import Message
from bot.textnorm import fold

MAX_TOPICS = 10
# The longest search (topics stored before MAX_TOPIC held up to 60 characters).
MAX_LABEL = 60
# The longest new topic: "Accessibilité numérique" is 23, "Intelligence
# artificielle" 25; a longer one reads as a sentence. Also in
# templates/_problems.j2 (code "bad_topic").
MAX_TOPIC = 40
# Besides letters, digits and spaces: C++, C#, .NET, Node.js, "Système d'information".
TOPIC_PUNCTUATION = frozenset("-+.#'’")
SUGGESTIONS = 3


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    name: str  # display name, or the Matrix ID

    @property
    def link(self) -> str:
        return "https://matrix.to/#/" + quote(self.user_id, safe="@:")


@dataclass(frozen=True, slots=True)
class Topic:
    key: str
    label: str
    mentors: list[Person]


def _allowed(char: str) -> bool:
    # Marks: accents typed decomposed, vowel signs of other scripts.
    return (
        char.isalnum()
        or char == " "
        or char in TOPIC_PUNCTUATION
        or unicodedata.category(char).startswith("M")
    )


def topic_ok(label: str) -> bool:
    """Whether `label` (spaces squeezed) may be a new topic."""
    return (
        0 < len(label) <= MAX_TOPIC
        and any(c.isalnum() for c in label)
        and all(_allowed(c) for c in label)
    )


def shown(text: str) -> str:
    """`text` as an answer may quote it: no control or invisible formatting
    character (a right-to-left override would turn the answer around)."""
    return "".join("\ufffd" if unicodedata.category(c).startswith("C") else c for c in text)


def parse_topics(text: str) -> list[tuple[str, str]]:
    """'Superset, données ouvertes' → [(key, label)…], deduplicated by key.

    `Problem("bad_topic")` names the first topic `topic_ok` refuses.
    """
    seen: dict[str, str] = {}
    for part in text.replace(";", ",").split(","):
        label = unicodedata.normalize("NFC", " ".join(part.split()))
        if not label:
            continue
        if not topic_ok(label):
            raise Problem("bad_topic", shown(label))
        key = fold(label)
        if key not in seen:
            seen[key] = label
    if len(seen) > MAX_TOPICS:
        raise Problem("too_many", str(MAX_TOPICS))
    return list(seen.items())


def searchable(query: str) -> str:
    """A search as a topic could be written: other characters become spaces
    ("grist ?" looks for "grist")."""
    return " ".join("".join(c if _allowed(c) else " " for c in query).split())


def matrix_id(text: str) -> str:
    candidate = text.strip().rstrip(",")
    if not MXID_RE.match(candidate):
        raise Problem("bad_id", candidate)
    return candidate


def suggest(query: str, keys: list[str]) -> list[str]:
    """Close topics: spelling neighbours first, then topics containing the words."""
    close = difflib.get_close_matches(query, keys, n=SUGGESTIONS, cutoff=0.6)
    near = [k for k in keys if k not in close and (query in k or k in query)]
    return (close + near)[:SUGGESTIONS]


def group(rows: list[MentorTopic]) -> list[Topic]:
    by_key: dict[str, list[MentorTopic]] = defaultdict(list)
    for row in rows:
        by_key[row.topic_key].append(row)
    topics = []
    for key, items in by_key.items():
        # The label used by most (then the earliest) is the one shown.
        labels = [i.label for i in sorted(items, key=lambda i: i.added_at)]
        label = max(labels, key=labels.count)
        people = [Person(i.user_id, i.display_name or i.user_id) for i in items]
        topics.append(Topic(key, label, people))
    return sorted(topics, key=lambda t: t.key)


def _when(ctx: Context, timestamp: int) -> str:
    return ctx.services.renderer.moment_label(timestamp)


@command(
    "mentors",
    "mentores",
    "mentorat",
    usage=N_("[topic]"),
    about=N_("volunteer mentors by topic (Superset, Grist…); with a topic, who can help you"),
)
async def mentors_command(ctx: Context) -> Message:
    rows = await ctx.storage.mentors.topics()
    topics = group(rows)
    query = " ".join(ctx.args.split())[:MAX_LABEL]
    if not query:
        return ctx.render("mentors", topics=topics, topic=None, query="", suggestions=[])
    key = fold(query)
    found = next((t for t in topics if t.key == key), None)  # also one stored before the rule
    if found is None:
        cleaned = searchable(query)
        if not any(c.isalnum() for c in cleaned):
            raise Problem("bad_query", shown(query))
        key = fold(cleaned)
        found = next((t for t in topics if t.key == key), None)
    if found is None:
        labels = {t.key: t.label for t in topics}
        suggestions = [labels[k] for k in suggest(key, list(labels))]
        return ctx.render(
            "mentors", topics=topics, topic=None, query=echo(shown(query)), suggestions=suggestions
        )
    # Listed, not called: no mentions (sent with an empty `m.mentions`, which
    # also keeps clients from pinging the names and IDs they find in it).
    return ctx.render("mentors", topics=topics, topic=found, query=query, suggestions=[])


@command(
    "mentor",
    about=N_(
        "offer to become a mentor (a moderator approves), or remove yourself from the directory"
    ),
)
async def mentor_command(ctx: Context) -> Message:
    """`!mentor <action> …`: the actions are the sub-commands below."""
    first = ctx.args.split(" ", 1)[0]
    if not first:
        raise UsageError
    raise Problem("unknown_action", first)


@mentor_command.sub(
    N_("propose"),
    "proposer",
    usage=N_("topic1, topic2"),
    example=N_("%(prefix)smentor propose Superset, Matomo"),
)
async def propose_command(ctx: Context) -> Message:
    return await _propose(ctx, ctx.args)


@mentor_command.sub(N_("remove-me"), "retirer-moi")
async def erase_command(ctx: Context) -> Message:
    return await _erase(ctx)


@mentor_command.sub(
    N_("add"),
    "ajouter",
    role=Role.COMMUNITY,
    usage=N_("@name:server topic1, topic2"),
    example=N_("%(prefix)smentor add @camille.dupont:agent.tchap.gouv.fr Superset, Grist"),
)
async def add_command(ctx: Context) -> Message:
    return await _add(ctx, ctx.args)


@mentor_command.sub(N_("remove"), "retirer", role=Role.COMMUNITY, usage=N_("@name:server [topic]"))
async def remove_command(ctx: Context) -> Message:
    return await _remove(ctx, ctx.args)


@mentor_command.sub(N_("requests"), "demandes", role=Role.COMMUNITY)
async def requests_command(ctx: Context) -> Message:
    return await _requests(ctx)


@mentor_command.sub(N_("approve"), "valider", role=Role.COMMUNITY, usage=N_("@name:server"))
async def approve_command(ctx: Context) -> Message:
    return await _approve(ctx, ctx.args)


@mentor_command.sub(N_("log"), "journal", role=Role.COMMUNITY)
async def log_command(ctx: Context) -> Message:
    return await _log(ctx)


async def _target(ctx: Context, rest: str) -> tuple[Person, str]:
    """Who the command is about, and the text after them.

    Typed as @name:server, or as a pill: then the body holds the display
    name and `m.mentions` the ID.
    """
    text = rest.strip()
    who, _, after = text.partition(" ")
    if MXID_RE.match(who.rstrip(",")) or len(ctx.msg.mentions) != 1:
        if not who:
            raise Problem("no_user")
        user_id = matrix_id(who)
        return await _person(ctx, user_id), after
    person = await _person(ctx, ctx.msg.mentions[0])
    for shown in (person.name, f"@{person.name}"):
        if text.startswith(shown):
            return person, text[len(shown) :].lstrip(" :,")
    raise Problem("bad_id", who)


async def _person(ctx: Context, user_id: str) -> Person:
    try:
        name = await ctx.chat.display_name(user_id)
    except UnknownUser:
        raise Problem("unknown_user", user_id) from None
    return Person(user_id, name or user_id)


async def _register(
    ctx: Context, person: Person, topics: list[tuple[str, str]], action: str
) -> Message:
    """Give topics to a mentor (audited as `action`); the reply mentions them."""
    display = None if person.name == person.user_id else person.name
    added = await ctx.storage.mentors.add(
        person.user_id, display, topics, ctx.msg.sender, action=action, room=ctx.msg.room_id
    )
    message = ctx.render(
        "mentor_done",
        outcome="added",
        person=person,
        labels=[label for _, label in topics],
        count=added,
    )
    return replace(message, mentions=(person.user_id,))


async def _add(ctx: Context, rest: str) -> Message:
    person, topics_text = await _target(ctx, rest)
    topics = parse_topics(topics_text)
    if not topics:
        raise Problem("no_topics")
    return await _register(ctx, person, topics, "add")


async def _remove(ctx: Context, rest: str) -> Message:
    if ctx.msg.mentions:
        person, topic_text = await _target(ctx, rest)
        user_id = person.user_id
    else:  # a typed ID: no profile lookup (the user may be gone from the server)
        who, _, topic_text = rest.strip().partition(" ")
        if not who:
            raise Problem("no_user")
        user_id = matrix_id(who)
    topic_key = fold(topic_text) or None
    removed = await ctx.storage.mentors.remove(
        user_id, topic_key, ctx.msg.sender, room=ctx.msg.room_id
    )
    if not removed:
        raise Problem("not_mentor" if topic_key is None else "not_mentor_topic", user_id)
    return ctx.render(
        "mentor_done",
        outcome="removed",
        person=Person(user_id, user_id),
        labels=[" ".join(topic_text.split())] if topic_key else [],
        count=removed,
    )


async def _propose(ctx: Context, rest: str) -> Message:
    topics = parse_topics(rest)
    if not topics:
        raise Problem("no_topics")
    added = await ctx.storage.mentors.request(ctx.msg.sender, topics)
    return ctx.render(
        "mentor_done",
        outcome="proposed" if added else "already",
        person=Person(ctx.msg.sender, ctx.msg.sender),
        labels=[label for _, label in topics],
        count=added,
    )


async def _requests(ctx: Context) -> Message:
    pending = await ctx.storage.mentors.requests()
    by_user: dict[str, list[str]] = defaultdict(list)
    for r in pending:
        by_user[r.user_id].append(r.label)
    return ctx.render("mentor_requests", requests=sorted(by_user.items()))


async def _approve(ctx: Context, rest: str) -> Message:
    person, _ = await _target(ctx, rest)
    user_id = person.user_id
    pending = await ctx.storage.mentors.requests(user_id)
    if not pending:
        raise Problem("no_request", user_id)
    topics = [(r.topic_key, r.label) for r in pending]
    return await _register(ctx, person, topics, "approve")


async def _erase(ctx: Context) -> Message:
    erased = await ctx.storage.mentors.erase_self(ctx.msg.sender)
    return ctx.render(
        "mentor_done",
        outcome="erased" if erased.entries else "nothing",
        person=Person(ctx.msg.sender, ctx.msg.sender),
        labels=[],
        count=erased.entries,
        feed=erased.feed,
    )


async def _log(ctx: Context) -> Message:
    entries = await ctx.storage.mentors.audit()
    return ctx.render(
        "mentor_log",
        entries=[(e, _when(ctx, e.at)) for e in entries],
    )


@command(
    "mes-donnees",
    "my-data",
    "mesdonnees",
    about=N_("what the bot keeps about you (answered in private)"),
    private=True,
)
async def my_data_command(ctx: Context) -> Message:
    user_id = ctx.msg.sender
    topics = await ctx.storage.mentors.topics(user_id=user_id)
    requests = await ctx.storage.mentors.requests(user_id)
    reminders = await ctx.storage.personal.reminders(user_id)
    feed = await ctx.storage.personal.feed_created(user_id)
    return ctx.render(
        "my_data",
        user_id=user_id,
        topics=[(t, _when(ctx, t.added_at)) for t in topics],
        requests=[(r, _when(ctx, r.requested_at)) for r in requests],
        reminders=[(r, _when(ctx, r.start)) for r in reminders],
        feed=None if feed is None else _when(ctx, feed),
    )
