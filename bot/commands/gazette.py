"""The editorial gazette, for the moderators of the editors' room (`gazette.editors_room`).

    !gazette                                  the draft and what it waits for
    !gazette brouillon                        build the draft now (or refresh what it gathers)
    !gazette ajouter <rubrique> <texte>       an item (links, **bold**, lists)
    !gazette retirer <n>                      remove item n
    !gazette apercu [correction]              the issue exactly as members will read it
    !gazette valider [brouillon|correction|retrait]   approve (or ✅ on the preview)
    !gazette publier                          publish the approved draft now
    !gazette corriger <n> <texte>             correct item n of the last issue, in every room
    !gazette retirer-tout                     remove the last issue from every room
    !gazette archives | journal               past issues; who did what, when

Changing and approving follow one rule (`bot.gazette.desk`): an approval
counts from a moderator who had no part in what it approves (wrote no item
of the issue, did not change the draft, did not ask for the correction or
retraction). Redacting the ✅ that approved withdraws the approval.
"""

from __future__ import annotations

import logging

from bot.commands.core import Context, Problem, Reaction, UsageError, command
from bot.commands.runner import strip_reply_fallback
from bot.db import gazette as store
from bot.db.gazette import Issue
from bot.db.storage import Storage
from bot.gazette.desk import ASKED, MAX_ITEM_CHARS, Desk
from bot.gazette.schedule import GazetteSchedule
from bot.i18n import N_
from bot.permissions import Role
from bot.render import Message
from bot.textnorm import fold

log = logging.getLogger(__name__)

# What `!gazette valider` may be told to approve, by folded word.
WHAT = {
    "brouillon": "draft",
    "draft": "draft",
    "correction": "request",
    "retrait": "request",
    "retraction": "request",
}
# The ✅ trigger: what a preview (or a correction's request) is marked with.
APPROVE = "approve"


def approving(message: Message, target: str) -> Message:
    """`message`, a preview of `target`: a ✅ on it approves that target."""
    return message.marked(APPROVE, (target,))


def desk(ctx: Context) -> Desk:
    """The desk, once the command is known to come from the editors' room."""
    services = ctx.services
    cfg = services.config.gazette
    if cfg.editors_room is None:
        raise Problem("gazette_off")
    if ctx.msg.room_id != cfg.editors_room or ctx.msg.direct:
        raise Problem("gazette_room")
    return Desk(
        ctx.storage,
        services.renderer,
        services.agenda,
        cfg,
        prefix=ctx.prefix,
        now=services.now,
    )


@command(
    "gazette",
    role=Role.COMMUNITY,
    about=N_("the gazette: write, preview and approve the next issue (editors' room)"),
)
async def gazette_command(ctx: Context) -> Message:
    if ctx.args.strip():
        raise Problem("gazette_action", ctx.args.split(" ", 1)[0])
    d = desk(ctx)
    draft = await d.store.draft()
    latest = await d.store.latest()
    request = None if latest is None else await d.store.pending_request(latest.id)
    return d.notice(
        "status",
        draft=draft,
        items=[] if draft is None else await d.items(draft),
        approval=None if draft is None else await d.draft_approval(draft),
        latest=latest,
        latest_items=[] if latest is None else await d.items(latest),
        request=request,
        request_approval=None if request is None else await d.request_approval(request),
        fire=d.config.schedule and await _next_fire(d),
    )


async def _next_fire(d: Desk) -> object:
    assert d.config.editors_room is not None
    return await GazetteSchedule(d, d.config.editors_room).next_publication()


@gazette_command.sub(N_("draft"), "brouillon", role=Role.COMMUNITY)
async def draft_command(ctx: Context) -> Message:
    d = desk(ctx)
    before = await d.store.draft()
    issue, how = await d.build(ctx.msg.sender)
    withdrawn = await d.withdrawn(before) if before is not None and how == "refreshed" else ()
    return d.notice("built", how=how, issue=issue, withdrawn=withdrawn)


@gazette_command.sub(
    N_("add"),
    "ajouter",
    role=Role.COMMUNITY,
    usage=N_("<section> <text>"),
    example=N_("%(prefix)sgazette add À la une Les **BlueHats days** reviennent !"),
)
async def add_command(ctx: Context) -> Message:
    d = desk(ctx)
    words = ctx.args.split(" ")
    section, taken = _section(d, words)
    if section is None:
        raise Problem("gazette_section", " ".join(words[:3]))
    text = _item_text(ctx, taken)
    if not text:
        raise UsageError
    if len(text) > MAX_ITEM_CHARS:
        raise Problem("gazette_too_long", str(MAX_ITEM_CHARS))
    draft = await _draft(ctx, d)
    withdrawn = await d.withdrawn(draft)
    n = await d.store.add_item(draft, section, text, ctx.msg.sender, _now(ctx))
    if n is None:
        raise Problem("gazette_busy")
    return d.notice("added", n=n, section=section, issue=draft, withdrawn=withdrawn)


@gazette_command.sub(N_("remove"), "retirer", role=Role.COMMUNITY, usage=N_("<n>"))
async def remove_command(ctx: Context) -> Message:
    d = desk(ctx)
    n = _number(ctx.args)
    draft = await d.store.draft()
    if draft is None:
        raise Problem("gazette_no_draft")
    withdrawn = await d.withdrawn(draft)
    removed = await d.store.remove_item(draft, n, ctx.msg.sender, _now(ctx))
    if removed is None:
        raise Problem("gazette_no_item", str(n))
    return d.notice("removed", item=removed, issue=draft, withdrawn=withdrawn)


@gazette_command.sub(
    N_("preview"), "apercu", "aperçu", role=Role.COMMUNITY, usage=N_("[correction]")
)
async def preview_command(ctx: Context) -> Message:
    d = desk(ctx)
    if fold(ctx.args) in ("correction", "retrait"):
        latest = await d.store.latest()
        request = None if latest is None else await d.store.pending_request(latest.id)
        if latest is None or request is None or request.kind != store.CORRECT:
            raise Problem("gazette_no_request")
        return approving(await d.corrected(latest, request), request.target)
    if ctx.args.strip():
        raise UsageError
    draft = await d.store.draft()
    if draft is None:
        raise Problem("gazette_no_draft")
    return approving(await d.render(draft), draft.target)


async def _approved(
    storage: Storage, reaction: str, room_id: str, sender: str
) -> tuple[str, ...] | None:
    """Whether `sender`'s ✅ `reaction` gave an approval: () if so, None if not."""
    approver = await storage.gazette.approved_by_reaction(reaction, room_id)
    return () if approver == sender else None


async def withdraw(ctx: Context) -> Message:
    """Its sender took back the ✅ `ctx.trigger.reaction`: the approval it gave
    is withdrawn, unless what it approved is done (published, applied)."""
    assert ctx.trigger is not None
    return await _withdraw(ctx, desk(ctx), ctx.trigger.reaction)


@gazette_command.sub(
    N_("approve"),
    "valider",
    role=Role.COMMUNITY,
    usage=N_("[draft|correction|retraction]"),
    reactions=[Reaction("✅", APPROVE, undo=withdraw, given=_approved)],
)
async def approve_command(ctx: Context) -> Message:
    """`!gazette valider [quoi]`; a ✅ on a preview runs it with what the preview showed."""
    d = desk(ctx)
    arg = ctx.args.strip()
    shown = None if ctx.trigger is None else ctx.trigger.values[0]
    wanted = None if shown is not None or not arg else WHAT.get(fold(arg))
    if arg and wanted is None:
        raise UsageError
    draft = await d.store.draft()
    latest = await d.store.latest()
    request = None if latest is None else await d.store.pending_request(latest.id)
    if shown is not None:  # a ✅ on a preview: what it showed, if still current
        current = {t for t in (draft and draft.target, request and request.target) if t}
        if shown not in current:
            return d.notice("stale")
        wanted = "draft" if shown.startswith("draft:") else "request"
    if wanted is None:
        if draft is not None and request is not None:
            return d.notice("which")
        wanted = "request" if request is not None else "draft"
    if wanted == "request":
        if request is None or latest is None:
            raise Problem("gazette_no_request")
        return await _approve_request(ctx, d, latest, request)
    if draft is None:
        raise Problem("gazette_no_draft")
    return await _approve_draft(ctx, d, draft)


def _reaction(ctx: Context) -> tuple[str, str] | None:
    """The ✅ that runs this `valider`, if one does: recorded with the approval."""
    return None if ctx.trigger is None else (ctx.trigger.reaction, ctx.msg.room_id)


async def _approve_draft(ctx: Context, d: Desk, draft: Issue) -> Message:
    sender = ctx.msg.sender
    why = await d.refusal(draft, sender)
    if why is not None:
        return d.notice("own", why=why, issue=draft)
    added = await d.store.approve(
        draft.target, sender, draft.number, _now(ctx), reaction=_reaction(ctx)
    )
    approval = await d.draft_approval(draft)
    return d.notice(
        "approved",
        issue=draft,
        approval=approval,
        again=not added,
        scheduled=draft.fire_at is not None and d.config.schedule is not None,
    )


async def _approve_request(ctx: Context, d: Desk, latest: Issue, request: store.Request) -> Message:
    sender = ctx.msg.sender
    if sender == request.requested_by:  # who also wrote a correction's text
        return d.notice("own", why=ASKED, issue=latest)
    added = await d.store.approve(
        request.target, sender, latest.number, _now(ctx), reaction=_reaction(ctx)
    )
    approval = await d.request_approval(request)
    queued = None
    if approval.done:
        queued = await d.apply(latest, request, sender)
        if queued:
            ctx.services.wake()
    return d.notice(
        "request_approved",
        issue=latest,
        request=request,
        approval=approval,
        again=not added,
        queued=queued,
    )


async def _withdraw(ctx: Context, d: Desk, reaction: str) -> Message:
    withdrawal = await d.store.withdraw(reaction, ctx.msg.sender, _now(ctx))
    if withdrawal is None:  # the ✅ approved nothing (refused, out of date)
        return d.notice("unapproved", withdrawal=None, by=ctx.msg.sender, approval=None)
    approval = None
    if withdrawal.kind == "draft":
        draft = await d.store.draft()
        if draft is not None and draft.target == withdrawal.target:
            approval = await d.draft_approval(draft)
    else:
        latest = await d.store.latest()
        request = None if latest is None else await d.store.pending_request(latest.id)
        if request is not None and request.target == withdrawal.target:
            approval = await d.request_approval(request)
    log.info(
        "gazette: ✅ %s taken back by %s (%s of issue %d): %s",
        reaction,
        ctx.msg.sender,
        withdrawal.kind,
        withdrawal.number,
        withdrawal.state,
    )
    return d.notice("unapproved", withdrawal=withdrawal, by=ctx.msg.sender, approval=approval)


@gazette_command.sub(N_("publish"), "publier", role=Role.COMMUNITY)
async def publish_command(ctx: Context) -> Message:
    d = desk(ctx)
    draft = await d.store.draft()
    if draft is None:
        raise Problem("gazette_no_draft")
    approval = await d.draft_approval(draft)
    if not approval.done:
        return d.notice("not_approved", issue=draft, approval=approval)
    # Published ahead of its planned time: that time is decided (nothing
    # more goes out then, and the editors are not told it was missed).
    queued = await d.publish(draft, ctx.msg.sender, fire_at=draft.fire_at)
    if queued is None:
        raise Problem("gazette_busy")
    ctx.services.wake()
    return d.notice("published", issue=draft, rooms=queued)


@gazette_command.sub(
    N_("correct"),
    "corriger",
    role=Role.COMMUNITY,
    usage=N_("<n> <text>"),
)
async def correct_command(ctx: Context) -> Message:
    d = desk(ctx)
    first, _, _ = ctx.args.partition(" ")
    n = _number(first)
    text = _item_text(ctx, 1)
    if not text:
        raise UsageError
    if len(text) > MAX_ITEM_CHARS:
        raise Problem("gazette_too_long", str(MAX_ITEM_CHARS))
    latest = await _published(d)
    if n not in {i.n for i in await d.items(latest)}:
        raise Problem("gazette_no_item", str(n))
    request, replaced = await d.store.request(
        latest, store.CORRECT, n, text, ctx.msg.sender, _now(ctx)
    )
    return d.notice(
        "correction",
        issue=latest,
        request=request,
        replaced=replaced,
        needed=d.config.approvals,
    )


@gazette_command.sub(N_("retract"), "retirer-tout", role=Role.COMMUNITY)
async def retract_command(ctx: Context) -> Message:
    d = desk(ctx)
    latest = await _published(d)
    request, replaced = await d.store.request(
        latest, store.RETRACT, None, None, ctx.msg.sender, _now(ctx)
    )
    message = d.notice(
        "retraction",
        issue=latest,
        request=request,
        replaced=replaced,
        copies=await d.store.copies(latest.number),
        needed=d.config.approvals,
    )
    return approving(message, request.target)  # a ✅ on it approves


@gazette_command.sub(N_("archives"), "archives", role=Role.COMMUNITY)
async def archives_command(ctx: Context) -> Message:
    d = desk(ctx)
    return d.notice("archives", issues=await d.store.archives())


@gazette_command.sub(N_("log"), "journal", role=Role.COMMUNITY)
async def log_command(ctx: Context) -> Message:
    d = desk(ctx)
    return d.notice("journal", entries=await d.store.journal())


# -- parsing ---------------------------------------------------------------------


def _section(d: Desk, words: list[str]) -> tuple[str | None, int]:
    """The section the arguments start with (its name, or its number), and words it took."""
    first = words[0].rstrip(":.") if words else ""
    if first.isdigit():
        index = int(first) - 1
        sections = d.config.sections
        return (sections[index], 1) if 0 <= index < len(sections) else (None, 0)
    best: tuple[str | None, int] = (None, 0)
    for count in range(1, min(len(words), 8) + 1):
        found = d.section(" ".join(words[:count]))
        if found is not None:
            best = (found, count)
    return best


def _item_text(ctx: Context, skip_words: int) -> str:
    """The item as typed: the first line after the command and `skip_words`
    arguments, and every following line (lists are written on several)."""
    words = ctx.args.split(" ")[skip_words:]
    text = " ".join(words).lstrip(": ").strip()
    body = strip_reply_fallback(ctx.msg.body).strip()
    _, newline, rest = body.partition("\n")
    if newline and rest.strip():
        text = f"{text}\n{rest.rstrip()}" if text else rest.strip("\n").rstrip()
    return text.strip()


def _number(text: str) -> int:
    value = text.strip().lstrip("#n°").strip()
    if not value:
        raise UsageError
    if not value.isdigit() or int(value) < 1:
        raise Problem("gazette_bad_number", text.strip())
    return int(value)


async def _draft(ctx: Context, d: Desk) -> Issue:
    """The draft to write in: built now if there is none."""
    draft = await d.store.draft()
    if draft is None:
        draft, _ = await d.build(ctx.msg.sender)
    return draft


async def _published(d: Desk) -> Issue:
    latest = await d.store.latest()
    if latest is None:
        raise Problem("gazette_none_published")
    if latest.status == store.RETRACTED:
        raise Problem("gazette_retracted", str(latest.number))
    return latest


def _now(ctx: Context) -> int:
    return int(ctx.services.now().timestamp())
