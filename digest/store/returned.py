"""A returned message (bounce report, complaint) applied to the subscriber and to the
delivery it is about, in one transaction.

The delivery row of the edition the message names keeps what happened after
it was sent, so `digest history EDITION` shows a bounce that arrived later:

* permanent failure: a delivery that was sent (or whose reply was lost)
  becomes ``failed`` with the reply ``bounced later: <report>``;
* temporary failure or complaint: the status stays, the reply notes it
  (``delayed later: ...``, ``complaint later: ...``).

A delivery still pending or being sent is left to its sender (the subscriber's
new status makes the sender skip it).
"""

from __future__ import annotations

from datetime import datetime

from digest.model import DeliveryStatus
from digest.store import subscribers as subscriber_rows
from digest.store.database import Store
from digest.store.schema import deliveries
from digest.store.timestamps import stamp

_DONE = (DeliveryStatus.SENT.value, DeliveryStatus.UNKNOWN.value,
         DeliveryStatus.UNCONFIRMED.value)
_LATER = {"permanent": "bounced later", "temporary": "delayed later",
          "complaint": "complaint later"}


def record_returned(store: Store, address: str, edition: int | None, now: datetime,
                    kind: str, note: str) -> str | None:
    """Apply the report to `address` and its delivery of `edition`; the subscriber's status
    afterwards, or None for an address not on the list."""
    with store.transaction() as conn:
        status = subscriber_rows.record_report_in(conn, address, now, kind, note)
        if status is None or edition is None or kind not in _LATER:
            return status
        reply = f"{_LATER[kind]}: {note}"[:1000]
        row = (deliveries.c.edition_id == edition) & (deliveries.c.recipient == address)
        if kind == "permanent":
            conn.execute(deliveries.update()
                         .where(row, deliveries.c.status.in_(_DONE))
                         .values(status=DeliveryStatus.FAILED.value, claimed_by=None,
                                 claimed_until=None, updated_at=stamp(now), reply=reply))
        else:
            conn.execute(deliveries.update()
                         .where(row, deliveries.c.status == DeliveryStatus.SENT.value)
                         .values(updated_at=stamp(now), reply=reply))
        return status
