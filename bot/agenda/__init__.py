"""Agenda: sources, normalisation into sessions, queries."""

from bot.agenda.model import Agenda, Session

__all__ = ["Agenda", "Session"]
