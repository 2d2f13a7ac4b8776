"""`!aide`: what the bot can do, for this user (commands they cannot run are hidden)."""

from __future__ import annotations

from bot.dispatch import Context, command
from bot.permissions import Role
from bot.render import Message


@command("aide", "help", "aidez-moi")
async def help_command(ctx: Context) -> Message:
    role = await ctx.role()
    return ctx.render(
        "help", commands=ctx.registry.visible_to(role), moderator=role >= Role.MODERATOR
    )
