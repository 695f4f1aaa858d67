"""Dropping root once the ports are bound (``--user``).

The alternative that needs no root at all is the capability: ``setcap cap_net_bind_service=+ep``
on the interpreter, or ``AmbientCapabilities=CAP_NET_BIND_SERVICE`` in the systemd unit.
"""

from __future__ import annotations

import os
import pwd


class PrivilegeError(Exception):
    """The user cannot be switched to; the message is the one line the operator sees."""


def drop_to(user: str) -> pwd.struct_passwd:
    """Become ``user`` (name or uid) for good: its groups, then its gid, then its uid.

    The user's supplementary groups are kept (initgroups), so a user in the ``docker`` group can
    still reach the Docker socket after the switch.
    """
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"no such user {user!r}") from None
    if os.geteuid() == entry.pw_uid:
        return entry
    if os.geteuid() != 0:
        raise PrivilegeError(f"cannot switch to user {entry.pw_name}: not running as root")
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as err:
        raise PrivilegeError(f"cannot switch to user {entry.pw_name}: {err.strerror}") from None
    if os.getuid() != entry.pw_uid or os.geteuid() != entry.pw_uid:
        raise PrivilegeError(f"switching to user {entry.pw_name} did not take")
    return entry


def unreadable(paths: tuple[str, ...] | list[str]) -> list[str]:
    """Which of ``paths`` this process (after ``drop_to``) cannot read: those it configured but
    whose changes it will not see. A file that does not exist is not counted: it may come."""
    found: list[str] = []
    for path in paths:
        if os.path.lexists(path):
            if not os.access(path, os.R_OK):
                found.append(path)
        elif not os.access(os.path.dirname(path) or ".", os.X_OK):
            found.append(path)  # hidden behind a directory this user cannot enter
    return found
