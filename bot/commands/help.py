"""`!aide`: what the bot can do, for this user (commands they cannot run are hidden).

Generated from the declarations: each command's usage and one line about
it, then, for moderators, the sub-commands reserved to them.
"""

from __future__ import annotations

from bot.commands.core import Context, command
from bot.i18n import N_
from bot.permissions import Role
from bot.render import Message


@command("aide", "help", "aidez-moi", about=N_("this help"))
async def help_command(ctx: Context) -> Message:
    role = await ctx.role()
    commands = ctx.registry.visible_to(role)
    reserved = [sub for cmd in commands for sub in cmd.visible_to(role) if sub.role > Role.ANYONE]
    return ctx.render("help", commands=commands, moderation=reserved, role=role)
