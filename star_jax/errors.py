"""The one family of user-input errors.

Every mistake a user can make (a file that cannot be read, a matrix that is not a camera, a config
field that does not exist, a checkpoint of the wrong shape) raises a subclass of `InputError`
whose message names the file, the line or frame, what was expected and what was found. Each job
catches `InputError` at its entry, prints that one line, and exits with code 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user's input cannot be used. The message is complete on its own (one line)."""
