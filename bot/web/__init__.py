"""The public web agenda, served by the bot with aiohttp.web."""
