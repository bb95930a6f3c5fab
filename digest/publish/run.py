"""One publish's context: what the scan found, what the last publish remembered, the
problems met so far, and the fast path that skips a publish when nothing changed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import jinja2

from digest import templates
from digest.errors import ArticleError
from digest.publish import scan as scanning
from digest.publish.feeds import feed_id, feed_meta
from digest.publish.fingerprints import config_fingerprint, scan_fingerprint
from digest.publish.output import Generation, current_generation
from digest.publish.phases import Phases
from digest.publish.reports import Progress, PublishReport, load_problems
from digest.publish.workers import Job
from digest.settings import Settings
from digest.store.database import Store

# What each publish remembers in the store for the next one.
META_KEYS = ("feed_id", "scan_fingerprint", "next_due", "page_signatures", "problems", "published_count")


@dataclass
class Run:
    """One publish: what the scan found and what the last publish remembered."""

    settings: Settings
    store: Store
    now: datetime
    progress: Progress | None
    env: jinja2.Environment
    meta: dict[str, str | None]  # remembered by the last publish (META_KEYS)
    fid: str
    config: str  # fingerprint of everything but the articles
    found: scanning.Scan
    scan_fp: str
    problems: list[ArticleError]
    clock: Phases

    @classmethod
    def scan(cls, settings: Settings, store: Store, now: datetime,
             progress: Progress | None) -> Run:
        """List the articles folder, and recall what the last publish remembered."""
        env = templates.environment(settings.templates_dir)
        meta = store.get_meta_many(META_KEYS)
        fid = feed_id(settings, meta["feed_id"])
        config = config_fingerprint(settings, env, fid)
        found = scanning.scan(settings.articles_dir, settings.max_asset_bytes)
        return cls(settings, store, now, progress, env, meta, fid, config, found,
                   scan_fingerprint(config, found.files + found.assets), list(found.problems),
                   Phases())

    def nothing_changed(self) -> bool:
        """The fast path: an output exists, no file changed, and nothing scheduled came due."""
        due = self.meta["next_due"]
        return (current_generation(self.settings.output_dir) is not None
                and self.meta["scan_fingerprint"] == self.scan_fp
                and (not due or self.now < datetime.fromisoformat(due)))

    def unchanged_report(self) -> PublishReport:
        return PublishReport(
            published=int(self.meta["published_count"] or 0), new=0, updated=0, removed=0,
            drafts=0, scheduled=0, problems=load_problems(self.meta["problems"]),
            files_written=0, files_kept=0, bytes_written=0, nothing_changed=True,
            output_dir=self.settings.output_dir,
        )

    def job(self, gen: Generation) -> Job:
        return Job(self.settings, self.now, gen.path, gen.previous, feed_meta(self.settings, self.fid))

    def report(self, phase: str, done: int, total: int) -> None:
        if self.progress and (done % 100 == 0 or done == total):
            self.progress(phase, done, total)
