"""Who holds a claim on deliveries, and whether that process is still running.

A sender's owner id (:func:`new_owner`) names its host, PID namespace and PID,
plus a random suffix. ``claimed_by`` stores it, so `digest status` can say who
holds a claim (:func:`owner_name`) and a sender on the same host can take over
the rows of a claimer whose process is gone (:func:`dead_owners`) without
waiting for its lease to expire.
"""

from __future__ import annotations

import os
import socket
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.model import DeliveryStatus
from digest.store.schema import deliveries


def new_owner() -> str:
    """An id for one sender: host, PID namespace and PID (to spot dead local claimers)."""
    return f"{socket.gethostname()}|{_pid_namespace()}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


def owner_name(owner: str | None) -> str:
    """A claimer as people say it: 'pid 4242 on mail-2' (from its new_owner() id)."""
    if not owner:
        return "nobody"
    parts = owner.split("|")
    if len(parts) == 4 and parts[2].isdigit():
        return f"pid {parts[2]} on {parts[0]}"
    return owner


def dead_owners(conn: Connection, edition_id: int) -> list[str]:
    """Claimers on this host (same PID namespace) whose process is gone."""
    owners = [row[0] for row in conn.execute(
        sa.select(deliveries.c.claimed_by).distinct()
        .where(deliveries.c.edition_id == edition_id,
               deliveries.c.status == DeliveryStatus.SENDING))]
    here = f"{socket.gethostname()}|{_pid_namespace()}|"
    dead = []
    for owner in owners:
        if not owner or not owner.startswith(here) or _pid_namespace() == "?":
            continue
        pid_text = owner[len(here):].split("|", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _alive(int(pid_text)):
            dead.append(owner)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").replace("|", "")
    except OSError:
        return "?"
