"""The one base class of problems with what a user gave upright.

A ``UserError`` (a bad flag value, file, folder, model or dataset) is shown by the command
as one line naming the problem, exit status 2. Anything else that escapes is a bug in
upright and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave cannot be used; the message says what and where."""


class DatasetError(UserError, ValueError):
    """A dataset name, folder or split that cannot be trained on."""
