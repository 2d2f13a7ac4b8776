"""The editorial gazette: drafts moderators write and approve, published once to every room.

markup.py   what moderators type, to safe HTML (a small Markdown subset)
content.py  what an issue gathers (sessions, feed entries, mentor topics) and how it reads
desk.py     the editors' operations: draft, items, approvals, publication, corrections
posts.py    what goes out: its broadcast kinds (issues, corrections, retractions, notices)
schedule.py when drafts are built and issues go out (`gazette.schedule`)
cron.py     the publication times (the one reader of the cron expression)
"""
