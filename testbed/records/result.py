"""The ``testbed run --json`` result file's version.

``schema_version`` is written at the top of the file and in every scenario of it.  Fields are
only ever added, never renamed or removed, and adding one does not change the version; it is
bumped only by a change an existing reader could misread: a field removed or renamed, or a
field's meaning, unit or type changed.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION"]

SCHEMA_VERSION = 1
