"""Map a request path to a file inside the output folder, and nothing outside it.

Two steps, both cheap enough to run on every request:

* :func:`relative_path` turns the decoded URL path into a relative path, or
  ``None`` when it could name anything outside the folder or hidden inside it:
  ``..`` and ``.`` segments, any segment starting with a dot, backslashes, NUL
  and other control characters, and percent-encoded slashes or backslashes in
  the raw path. A trailing slash names the folder's ``index.html``.
* :func:`resolve_inside` resolves symlinks, the output folder's own included
  (it points at the current generation and is re-read each time), and returns
  the real path only when it lies inside that folder. A symlink inside the
  output that leads elsewhere therefore resolves to "not found".
"""

from __future__ import annotations

import os
import re

INDEX = "index.html"

_UNSAFE = re.compile(r"/\.|\\|[\x00-\x1f\x7f]")
_ENCODED_SEPARATOR = re.compile(rb"%(?:2f|5c)", re.IGNORECASE)


def relative_path(path: str, raw_path: bytes | None = None) -> str | None:
    """The file a URL path names, relative to the output folder, or None if refused."""
    if not path.startswith("/") or _UNSAFE.search(path):
        return None
    if raw_path is not None and b"%" in raw_path and _ENCODED_SEPARATOR.search(raw_path):
        return None
    relative = path[1:]
    if "//" in path:
        parts = [part for part in path.split("/") if part]
        relative = "/".join(parts) + ("/" if parts and path.endswith("/") else "")
    if not relative or relative.endswith("/"):
        relative += INDEX
    return relative


def resolve_inside(root: str, relative: str) -> str | None:
    """The real path of `relative` under `root`, or None when it would leave the folder.

    `root` is the configured output folder, possibly a symlink to the current
    generation; it is resolved anew on each call.
    """
    try:
        real_root = os.path.realpath(root, strict=True)
        real = os.path.realpath(os.path.join(real_root, relative), strict=True)
    except (OSError, ValueError):
        return None
    if real == real_root:
        return real
    prefix = real_root if real_root.endswith(os.sep) else real_root + os.sep
    return real if real.startswith(prefix) else None
