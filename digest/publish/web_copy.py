"""The web copy of a new digest edition, online before its first message goes out.

``digest send`` and the scheduled send call :func:`publish_digest_pages` right
after making (or resuming) an edition and before delivering it. The pages
(:mod:`digest.publish.digests`) go online as a new output generation, the rest
of the site carried over unchanged, so a crash never leaves a half-written
site; the next publish renders them again from the store, and lists the new
page in the sitemap (it is told not to trust that nothing changed).
"""

from __future__ import annotations

import os
from collections.abc import Collection

from digest import templates
from digest.publish.digests import render_pages
from digest.publish.output import Generation, current_generation
from digest.settings import Settings
from digest.store.database import Store
from digest.store.editions import load_editions

# What the last publish saw of ARTICLES_DIR (digest.publish.build): "" makes the next
# publish a full one instead of trusting that nothing changed.
SCAN_FINGERPRINT = "scan_fingerprint"


def publish_digest_pages(settings: Settings, store: Store) -> bool:
    """Bring the digests' pages online (as a new output generation, so atomically).

    Everything else of the current output is carried over unchanged (hard
    links). Without any output yet, the pages are written alone. Either way the next
    publish is told not to trust that nothing changed: it writes the whole site, or
    brings the sitemap up to date with the new page.
    Returns False when the pages online were already up to date (a resumed edition).
    """
    env = templates.environment(settings.templates_dir)
    if _online(settings, render_pages(env, settings, load_editions(store))):
        return False
    with store.exclusive("publish"), Generation(settings.output_dir) as gen:
        made = render_pages(env, settings, load_editions(store))  # under the lock: latest
        if _online(settings, made):
            return False  # another sender put them online meanwhile
        _keep_all(gen, skip=made.keys())
        for path, data in made.items():
            gen.write(path, data)
        gen.commit()
        store.set_meta({SCAN_FINGERPRINT: ""})
    return True


def _online(settings: Settings, made: dict[str, bytes]) -> bool:
    """Whether the current output holds exactly these pages."""
    current = current_generation(settings.output_dir)
    if current is None:
        return False
    for path, data in made.items():
        try:
            if (current / path).read_bytes() != data:
                return False
        except OSError:
            return False
    return True


def _keep_all(gen: Generation, skip: Collection[str]) -> None:
    """Carry every file of the previous generation over, but those in `skip`."""
    if gen.previous is None:
        return
    root = str(gen.previous)
    for folder, _, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in files:
            path = prefix + name
            if path not in skip:
                gen.keep(path)
