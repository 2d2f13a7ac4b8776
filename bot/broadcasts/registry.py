"""Every kind of broadcast, registered once: a new kind is its feature's module and one
line below.

The texts of the keys are stored in databases and read back after an
upgrade: never change them, add a kind instead.

    reminder:<session id>:<seconds before the start>:<start, Unix time>   bot.reminders
    personal:<session id>:<start, Unix time>:<user id>                    bot.reminders
    change:<programme change key>                                          bot.reminders
    feed:<24 hex of sha256("<feed URL>|<entry key>")>                      bot.feeds
    moved:<the upgraded room's id>   (said once in its replacement room)   bot.rooms
    issue:<gazette number>                   (an issue, to subscribed rooms)       bot.gazette.posts
    issue-edit:<gazette number>:<revision>   (a correction: m.replace of a copy)
    issue-redact:<gazette number>            (a retraction: a copy redacted)
    desk:<what>:<reference>                  (a notice to the editors' room)
    gazette:<edition: the scheduled time, UTC, YYYYMMDDTHHMM>   (before the editorial gazette)

The feature modules are imported at the first lookup, not with the broadcaster.
"""

from __future__ import annotations

from functools import cache

from bot.broadcasts.kind import Key, Kinds


@cache
def registered() -> Kinds:
    """The kinds the bot sends."""
    from bot import feeds, reminders, rooms
    from bot.gazette import posts

    return Kinds(
        reminders.REMINDER,
        reminders.PERSONAL,
        reminders.CHANGE,
        feeds.FEED,
        rooms.MOVED,
        posts.ISSUE,
        posts.ISSUE_EDIT,
        posts.ISSUE_REDACT,
        posts.DESK,
        posts.GAZETTE_NOTICE,
    )


def parse(text: str) -> Key:
    """The key written as `text` by `str(key)`; ValueError if it is not one."""
    _, key = registered().read(text)
    assert isinstance(key, Key)
    return key
