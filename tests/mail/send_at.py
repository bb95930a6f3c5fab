"""`digest send` at a given moment, in its own process (for the kill tests on a fake clock).

    python -m tests.mail.send_at 2024-05-13T07:00:00+00:00

Settings come from the environment, as for the CLI; the clock is the argument
(plus the real time that passes). Prints the report's edition and counts.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from digest.mail.send import send_digest
from digest.mail.smtp import SMTPMailer
from digest.settings import load_settings
from digest.store.database import Store


def main() -> None:
    moment = datetime.fromisoformat(sys.argv[1])
    settings = load_settings(dict(os.environ), Path.cwd())
    store = Store.open(settings.database_url, Path.cwd())
    try:
        report = send_digest(settings, store, lambda: SMTPMailer(settings), moment)
    finally:
        store.close()
    print(f"edition {report.edition} created={report.created} sent={report.sent} "
          f"remaining={report.remaining}", flush=True)


if __name__ == "__main__":
    main()
