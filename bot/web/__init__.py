"""The public agenda on the web: pages and calendars (aiohttp.web), free of Matrix.

`server.WebServer` serves `site.Site`: what the bot's process shares with it
is the agenda, the storage and the renderer, so that it could run as its own
process on the same database.
"""
