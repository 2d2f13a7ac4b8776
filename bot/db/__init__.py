"""The database: the bot's memory across restarts, and the only place that writes SQL.

`database` (connections, transactions, fetch helpers), `upgrade` (versioned
migrations), `backup` (consistent copies through SQLite's backup API), one
module per group of tables with its dataclasses and queries, and
`storage.Storage`, which checks and opens it all and holds one repository per
group.
"""
