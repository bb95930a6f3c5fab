"""Report wording shared by the commands (`digest publish`, `digest send`) and the
scheduled jobs of `digest run`, so the two say the same thing the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING

from digest.words import plural as plural  # the one plural rule, re-exported

if TYPE_CHECKING:
    from digest.mail.send import SendReport


def delivery_counts(report: SendReport) -> str:
    """'3 sent, 1 failed, 0 skipped, 0 deferred': what a send did with its deliveries."""
    return (f"{report.sent} sent, {report.failed} failed, {report.skipped} skipped, "
            f"{report.deferred} deferred")

