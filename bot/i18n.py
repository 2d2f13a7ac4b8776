"""Marking texts for translation in Python code.

`N_("…")` marks an English message id that `pybabel extract` collects; the
renderer translates it when a template shows it (`_(text)`).
"""


def N_(message: str) -> str:
    return message
