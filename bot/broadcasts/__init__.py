"""Kinds of broadcasts: each declared next to its feature (`kind.Kind`), registered
once (`registry`); `bot.broadcast` queues what is due and sends it."""
