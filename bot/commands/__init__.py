"""Bot commands; each module marks its handlers with `@command`."""

from bot.commands import (
    agenda,
    gazette,
    help,
    mentors,
    my_calendar,
    personal,
    session,
    subscriptions,
)
from bot.commands.core import Registry


def build_registry() -> Registry:
    return Registry().collect(
        agenda, session, personal, my_calendar, mentors, subscriptions, gazette, help
    )
