"""The database: the bot's memory across restarts, and the only place that writes SQL.

`database` (connection, transactions, fetch helpers), `upgrade` (versioned
migrations), one module per group of tables with its dataclasses and
queries, and `storage.Storage`, which opens it all and holds one repository
per group.
"""
