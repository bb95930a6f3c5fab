"""The exit codes of every `digest` command, in one place.

The CLI exits with these; each :class:`digest.errors.DigestError` names the one
it ends a command with. The README's command sections list them per command.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILED: Final = 1  # the command failed (for publish: the previous output is kept)
USAGE: Final = 2  # a bad option or setting: fix the command line or the configuration
PROBLEMS: Final = 3  # the run finished, but some articles or deliveries had problems
UNKNOWN_OUTCOME: Final = 4  # the send finished, but the reply to some messages was lost
INTERRUPTED: Final = 130  # Ctrl-C (128 + SIGINT)
STOPPED: Final = 143  # stopped by SIGTERM (128 + SIGTERM)
