"""Versioned, described migrations: the schema from nothing to today, one step at a time.

One module a step (`v01` … `vNN`), each registering its function with its
version and what it does (`table.upgrades`); importing this package imports
them in order. `UpgradeTable.upgrade` applies the missing ones in order, each
in its own transaction together with its `PRAGMA user_version` bump, so that
a crash leaves the database at a known version. A database newer than the
code is refused and left untouched.

Never edit a released step (databases in the wild went through it): add a
module. The SQL of steps 1-9 is the text they were released with.
"""

from bot.db.upgrade import (  # noqa: F401 - each registers its step, in this order
    v01,
    v02,
    v03,
    v04,
    v05,
    v06,
    v07,
    v08,
    v09,
    v10,
    v11,
    v12,
    v13,
    v14,
    v15,
    v16,
    v17,
    v18,
    v19,
    v20,
    v21,
    v22,
    v23,
)
from bot.db.upgrade.table import Step, UpgradeTable, run_script, schema_version, upgrades

__all__ = ["Step", "UpgradeTable", "run_script", "schema_version", "upgrades"]
