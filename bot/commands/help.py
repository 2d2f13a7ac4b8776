"""`!aide`: what the bot can do, for this user (commands they cannot run are hidden).

Generated from the declarations: each command's usage and one line about
it, then the sub-commands reserved to the community's moderators, each
shown only to whoever may run it.
"""

from __future__ import annotations

from bot.commands.core import Context, command
from bot.i18n import N_
from bot.permissions import NO_RIGHTS, Role
from bot.render import Message


@command("aide", "help", "aidez-moi", about=N_("this help"))
async def help_command(ctx: Context) -> Message:
    rights = await ctx.rights()
    commands = ctx.registry.visible_to(rights)

    # Commands reserved to some (`!abonner`: the room's moderators) are listed
    # with the others when this person may run them; sub-commands reserved to
    # the community's moderators, apart.
    community = [
        sub for cmd in commands for sub in cmd.visible_to(rights) if sub.role is Role.COMMUNITY
    ]
    return ctx.render(
        "help",
        commands=commands,
        community=community,
        rights=rights,
        public=NO_RIGHTS,
    )
