"""The error base classes; a leaf module (it imports nothing of rmr1).

Every exception class rmr1-plugins defines derives from :class:`RMR1Error`, and also from the
builtin it always had (``ValueError``, ``KeyError``, ``OSError`` or ``RuntimeError``), so
existing ``except ValueError`` code keeps working. A wrong argument to a Python function (an
``on_unparsed`` that is not a choice, a negative prior) is a plain ``ValueError`` or
``TypeError``, as in the standard library. :class:`UsageError` marks the mistakes a user can fix
(bad input, configuration or name): ``rmr1`` prints them as one ``error:`` line and exits 2.

>>> from rmr1_plugins import ConfigError, RMR1Error, UsageError
>>> issubclass(ConfigError, UsageError) and issubclass(ConfigError, ValueError)
True
>>> issubclass(UsageError, RMR1Error)
True
"""

from __future__ import annotations


class RMR1Error(Exception):
    """The base of every error rmr1-plugins raises."""


class UsageError(RMR1Error):
    """A mistake the user can fix: bad input, a bad configuration, an unknown name."""
