"""Article pages the readers did not write: a page whose article was not read again is
carried over from the last output, or written anew when that lacks it (or a refused
duplicate overwrote it)."""

from __future__ import annotations

from digest.errors import ArticleError
from digest.model import article_path, site_info
from digest.publish import scan as scanning
from digest.publish.decide import Shown
from digest.publish.intake import Read
from digest.publish.output import Generation
from digest.publish.pages import article_page
from digest.publish.records import read_file
from digest.publish.run import Run
from digest.settings import Settings


def write_article_pages(run: Run, gen: Generation, read: Read, shown: Shown,
                        bodies: Bodies) -> None:
    """Write each published article's page that no reader wrote and the last output lacks."""
    # Pages of duplicates written while reading: drop them, and rewrite a winner's page
    # that a loser with the same slug may have overwritten.
    clobbered = set()
    for key in read.pages_written - shown.winners.keys():
        page = article_path(read.current[key].slug)
        gen.discard(page)
        clobbered.add(page)
    info = site_info(run.settings)
    for done, entry in enumerate(shown.entries, 1):
        path = article_path(entry.slug)
        run.report("write", done, len(shown.entries))
        if entry.key in read.pages_written and path not in clobbered:
            continue
        if entry.key not in read.pages_written and gen.keep(path):
            continue
        body = bodies.page(entry.key)
        if body is not None or not gen.keep(path):
            gen.write(path, article_page(run.env, info, entry, body or ""))
    run.clock.mark(f"place {len(shown.entries)} article pages")


class Bodies:
    """Article bodies read again: for a page that must be written anew, or the feed content
    of an article neither read now nor kept in the contents pack."""

    def __init__(self, settings: Settings, found: scanning.Scan) -> None:
        self._settings = settings
        self._sources = {f.key: f for f in found.files}

    def page(self, key: str) -> str | None:
        """The article's HTML (links as on its page); None when its file is broken or gone."""
        source = self._sources.get(key)
        if source is None:
            return None
        try:
            return read_file(source, self._settings).body_html
        except ArticleError:
            return None
