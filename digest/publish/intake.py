"""Reading what changed: the files whose size, time or settings changed since the last
publish are read (in reader processes when many, which write their pages too); every
other article keeps the record the store remembers."""

from __future__ import annotations

from dataclasses import dataclass

from digest.errors import ArticleError
from digest.model import StoredArticle
from digest.publish.contents import Newest
from digest.publish.fingerprints import config_of
from digest.publish.output import Generation
from digest.publish.records import Outcome, Task, read_one
from digest.publish.run import Run
from digest.publish.workers import Workers

PARALLEL_FROM = 2000  # articles to read before it pays to start reader processes


@dataclass
class Read:
    """Every article after reading the files that changed: the store's records, brought up to date."""

    stored: dict[str, StoredArticle]  # as remembered before this publish
    current: dict[str, StoredArticle]  # every article: read now, or its record kept
    changed: list[StoredArticle]  # records that differ from the remembered ones
    pages_written: set[str]  # keys whose page a reader wrote
    newest: Newest  # feed contents of the articles read that may be in a feed


def read_changed(run: Run, gen: Generation, workers: Workers) -> Read:
    """Read the files that changed since the last publish (writing their pages); keep the rest."""
    stored = run.store.load_articles()
    read = Read(stored, {}, [], set(), Newest(run.settings.feed_max_items))
    tasks = _to_read(run, read)
    run.clock.mark("scan and load the store")
    outcomes = workers.map(read_one, tasks, PARALLEL_FROM)
    for done, (task, outcome) in enumerate(zip(tasks, outcomes, strict=True), 1):
        run.report("read", done, len(tasks))
        _take(run, read, gen, task, outcome)
    if run.found.unlisted:  # articles in a folder that can't be listed now keep their records
        read.current.update((k, r) for k, r in stored.items()
                            if k not in read.current and run.found.hides(k))
    run.clock.mark(f"read {len(tasks)} files")
    return read


def _to_read(run: Run, read: Read) -> list[Task]:
    """The files to read; an unchanged file (same size and time, same config) keeps its record,
    unless reading it warned (read again: the warnings are reported until fixed) or a file
    its links name is gone (read again: its page, image and warnings follow)."""
    config_same = config_of(run.meta["scan_fingerprint"]) == run.config
    tasks: list[Task] = []
    for source in run.found.sorted_files():
        old = read.stored.get(source.key)
        if (config_same and old is not None and old.size == source.size
                and old.mtime_ns == source.mtime_ns and not old.warnings
                and (not old.references or run.found.asset_keys.issuperset(old.references))):
            read.current[source.key] = old
        else:
            tasks.append((source, old))
    return tasks


def _take(run: Run, read: Read, gen: Generation, task: Task, outcome: Outcome) -> None:
    """Take in what reading one file gave: its record and page, or why it was refused."""
    source, old = task
    if isinstance(outcome, ArticleError):
        run.problems.append(outcome)
        if old is not None:
            read.current[source.key] = old  # keep the last good version published
        return
    record, warnings, page, nbytes, content = outcome
    run.problems.extend(ArticleError(source.key, w, "fix the file") for w in warnings)
    gen.count(page is not None and nbytes >= 0, nbytes)
    if page is not None:
        read.pages_written.add(source.key)
    if content is not None:
        read.newest.offer(record, content)
    read.current[source.key] = record
    if record != old:
        read.changed.append(record)
