"""Bot commands; each module marks its handlers with `@command`."""

from bot.commands import agenda, help, mentors, personal, session, subscriptions
from bot.commands.core import Registry


def build_registry() -> Registry:
    return Registry().collect(agenda, session, personal, mentors, subscriptions, help)
