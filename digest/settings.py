"""Settings: one frozen value built from a mapping of strings.

Only the CLI reads the process environment and ``.env``; it hands the merged
mapping to :func:`load_settings`. Every setting is declared once in
:data:`SPECS` with its parser, default and a one-line description; the README
table and ``.env.example`` are checked against that list by the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.cron import CronError, parse_schedule
from digest.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ADDRESS = re.compile(r"^[^@\s<>\",;]+@[^@\s<>\",;]+\.[^@\s<>\",;]+$")


@dataclass(frozen=True)
class Settings:
    """Everything digest needs to know, parsed and validated."""

    base_dir: Path
    base_url: str
    site_title: str
    site_subtitle: str
    site_author: str
    site_language: str
    site_timezone: ZoneInfo
    feed_id: str | None
    articles_dir: Path
    output_dir: Path
    templates_dir: Path | None
    database_url: str
    feed_max_items: int
    max_article_bytes: int
    smtp_host: str
    smtp_port: int | None
    smtp_security: str
    smtp_username: str | None
    smtp_password: str | None = field(repr=False)
    smtp_timeout: float = 30.0
    smtp_rate_limit: float | None = None
    smtp_ca_file: Path | None = None
    digest_from: str | None = None
    digest_recipients: tuple[str, ...] = ()
    digest_subject: str = "{site}: {count} new articles"
    digest_max_items: int = 30
    unsubscribe_mailto: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    publish_interval: float = 300.0
    digest_schedule: str = "0 7 * * *"
    digest_timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    misfire_grace_time: float = 3600.0
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    subscribe_form: bool = False

    @property
    def site_url(self) -> str:
        """BASE_URL with exactly one trailing slash."""
        return self.base_url.rstrip("/") + "/"

    def url(self, path: str) -> str:
        """Absolute URL of a path inside the published site."""
        return self.site_url + path.lstrip("/")

    @property
    def smtp_effective_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {"ssl": 465, "starttls": 587}.get(self.smtp_security, 25)


@dataclass(frozen=True)
class Spec:
    """One setting: its environment name, the field it fills, how to parse it."""

    env: str
    field: str
    default: str
    help: str
    parse: Callable[[str, str, Path], Any]
    secret: bool = False


def _text(name: str, value: str, base: Path) -> str:
    return value.strip()


def _optional_text(name: str, value: str, base: Path) -> str | None:
    return value.strip() or None


def _path(name: str, value: str, base: Path) -> Path:
    if not value.strip():
        raise ConfigError(f"{name} is empty", f"set {name} to a folder path, e.g. {name}=public")
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else base / path


def _optional_path(name: str, value: str, base: Path) -> Path | None:
    return _path(name, value, base) if value.strip() else None


def _url(name: str, value: str, base: Path) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{name}={value!r} is not an absolute http(s) URL",
            f"set {name} to the public address of the site, e.g. {name}=https://example.org/news/",
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{name}={value!r} must not have a query or fragment",
                          f"set {name} to the folder URL the site is served from")
    return value.strip()


def _int_parser(minimum: int, maximum: int | None = None) -> Callable[[str, str, Path], int]:
    def parse(name: str, value: str, base: Path) -> int:
        try:
            number = int(value.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a whole number",
                              f"set {name} to a whole number >= {minimum}") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ConfigError(f"{name}={value!r} is out of range",
                              f"set {name} to a whole number >= {minimum}{upper}")
        return number

    return parse


def _optional_port(name: str, value: str, base: Path) -> int | None:
    return _int_parser(1, 65535)(name, value, base) if value.strip() else None


def parse_duration(name: str, value: str) -> float:
    """Seconds from '300', '90s', '5m', '2h', '1d' or '250ms'."""
    match = _DURATION.match(value)
    if not match:
        raise ConfigError(f"{name}={value!r} is not a duration",
                          f"set {name} to seconds or a number with a unit: 30s, 5m, 2h, 1d")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise ConfigError(f"{name}={value!r} must be longer than zero",
                          f"set {name} to a positive duration such as 5m")
    return seconds


def _duration(name: str, value: str, base: Path) -> float:
    return parse_duration(name, value)


def _optional_rate(name: str, value: str, base: Path) -> float | None:
    if not value.strip():
        return None
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if rate <= 0:
        raise ConfigError(f"{name}={value!r} is not a positive number",
                          f"set {name} to messages per second (e.g. 10), or leave it empty")
    return rate


def _flag(name: str, value: str, base: Path) -> bool:
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not on or off",
                      f"set {name} to on or off (also: yes/no, true/false, 1/0)")


def _zone(name: str, value: str, base: Path) -> ZoneInfo:
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a known time zone",
                          f"set {name} to an IANA zone name such as UTC or Europe/Berlin") from None


def _security(name: str, value: str, base: Path) -> str:
    mode = value.strip().lower()
    if mode not in ("starttls", "ssl", "none"):
        raise ConfigError(f"{name}={value!r} is not one of starttls, ssl, none",
                          f"set {name}=starttls (port 587), ssl (port 465) or none (local relay)")
    return mode


def check_address(address: str, where: str) -> str:
    """Return a plain address or raise ConfigError naming where it came from."""
    candidate = address.strip()
    if not _ADDRESS.match(candidate) or any(ord(c) < 32 for c in candidate):
        raise ConfigError(f"{where}: {address!r} is not an email address",
                          "use the form name@example.org")
    return candidate


def _optional_address(name: str, value: str, base: Path) -> str | None:
    if not value.strip():
        return None
    # Allow "Display Name <addr@example.org>".
    match = re.match(r"^\s*(.*?)\s*<([^<>]+)>\s*$", value)
    check_address(match.group(2) if match else value, name)
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{name} contains a line break", f"write {name} on one line")
    return value.strip()


def _addresses(name: str, value: str, base: Path) -> tuple[str, ...]:
    parts = [p for p in re.split(r"[,\s;]+", value) if p]
    return tuple(dict.fromkeys(check_address(p, name) for p in parts))


def _subject(name: str, value: str, base: Path) -> str:
    try:
        value.format(site="x", count=1, date="2000-01-01")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{name}={value!r} has an unknown placeholder ({exc})",
                          "use only {site}, {count} and {date}") from None
    return value


def _cron(name: str, value: str, base: Path) -> str:
    try:
        return parse_schedule(value, ZoneInfo("UTC")).expression
    except CronError as exc:
        raise ConfigError(f"{name}={value!r} is not a crontab expression: {exc}",
                          f"set {name} to five fields: minute hour day month weekday, "
                          "e.g. '0 7 * * *' (daily at 07:00) or '30 6 * * mon' "
                          "(weekday 0 or 7 = Sunday)") from None


SPECS: tuple[Spec, ...] = (
    Spec("BASE_URL", "base_url", "http://127.0.0.1:8080/",
         "public URL the site is served from; every absolute link is built from it", _url),
    Spec("SITE_TITLE", "site_title", "digest", "title of the site, feeds and digest", _text),
    Spec("SITE_SUBTITLE", "site_subtitle", "New articles", "subtitle of the feeds", _text),
    Spec("SITE_AUTHOR", "site_author", "digest", "default author of articles and feeds", _text),
    Spec("SITE_LANGUAGE", "site_language", "en", "language code of the site and feeds", _text),
    Spec("SITE_TIMEZONE", "site_timezone", "UTC",
         "time zone of article dates written without one (IANA name)", _zone),
    Spec("FEED_ID", "feed_id", "",
         "permanent id of the feed (default: made from BASE_URL at the first publish and kept "
         "in the state store)", _optional_text),
    Spec("ARTICLES_DIR", "articles_dir", "articles", "folder of article files", _path),
    Spec("OUTPUT_DIR", "output_dir", "public", "folder the site and feeds are written to", _path),
    Spec("TEMPLATES_DIR", "templates_dir", "templates",
         "folder of your Jinja2 templates; missing ones fall back to the built-in set",
         _optional_path),
    Spec("DATABASE_URL", "database_url", "sqlite:///digest.sqlite3",
         "state store: sqlite:///file.sqlite3 or postgresql://user@host/db", _text),
    Spec("FEED_MAX_ITEMS", "feed_max_items", "50",
         "entries in the feed; older ones move to archive feeds", _int_parser(1, 10000)),
    Spec("MAX_ARTICLE_BYTES", "max_article_bytes", "1048576",
         "larger article files are refused", _int_parser(64)),
    Spec("SMTP_HOST", "smtp_host", "localhost", "SMTP server for the digest", _text),
    Spec("SMTP_PORT", "smtp_port", "",
         "SMTP port (default: 587 for starttls, 465 for ssl, 25 for none)", _optional_port),
    Spec("SMTP_SECURITY", "smtp_security", "starttls",
         "starttls, ssl or none", _security),
    Spec("SMTP_USERNAME", "smtp_username", "", "SMTP login (empty: no AUTH)", _optional_text),
    Spec("SMTP_PASSWORD", "smtp_password", "", "SMTP password; never logged",
         _optional_text, secret=True),
    Spec("SMTP_TIMEOUT", "smtp_timeout", "30s", "SMTP network timeout", _duration),
    Spec("SMTP_RATE_LIMIT", "smtp_rate_limit", "",
         "most messages per second (empty: no limit)", _optional_rate),
    Spec("SMTP_CA_FILE", "smtp_ca_file", "",
         "PEM file of CA certificates to trust for the SMTP server's TLS "
         "(empty: the system's)", _optional_path),
    Spec("DIGEST_FROM", "digest_from", "",
         "From address of the digest, e.g. News <news@example.org>", _optional_address),
    Spec("DIGEST_RECIPIENTS", "digest_recipients", "",
         "addresses added to the subscribers at each send (comma separated)", _addresses),
    Spec("DIGEST_SUBJECT", "digest_subject", "{site}: {count} new articles",
         "subject of the digest; placeholders {site}, {count}, {date}", _subject),
    Spec("DIGEST_MAX_ITEMS", "digest_max_items", "30",
         "most articles one digest message lists (the newest); it counts the rest and "
         "links to the site", _int_parser(1, 10000)),
    Spec("UNSUBSCRIBE_MAILTO", "unsubscribe_mailto", "",
         "address for mailto: unsubscribe requests (optional)", _optional_address),
    Spec("SECRET_KEY", "secret_key", "",
         "signs unsubscribe and confirmation links; required to send and serve", _optional_text,
         secret=True),
    Spec("PUBLISH_INTERVAL", "publish_interval", "5m",
         "how often `digest run` publishes (seconds, or 30s, 5m, 1h)", _duration),
    Spec("DIGEST_SCHEDULE", "digest_schedule", "0 7 * * *",
         "crontab (minute hour day month weekday) for the digest; weekday 0 or 7 = Sunday, "
         "1 = Monday, or names sun-sat", _cron),
    Spec("DIGEST_TIMEZONE", "digest_timezone", "UTC", "time zone of DIGEST_SCHEDULE", _zone),
    Spec("MISFIRE_GRACE_TIME", "misfire_grace_time", "1h",
         "a digest missed while down is still sent if the service is back within this", _duration),
    Spec("SERVE_HOST", "serve_host", "127.0.0.1", "address `digest serve` listens on", _text),
    Spec("SERVE_PORT", "serve_port", "8080", "port `digest serve` listens on",
         _int_parser(1, 65535)),
    Spec("SUBSCRIBE_FORM", "subscribe_form", "off",
         "on: the index page has a subscribe form and `digest serve` takes sign-ups (double "
         "opt-in by mail; needs DIGEST_FROM and SMTP)", _flag),
)

ENV_NAMES = frozenset(spec.env for spec in SPECS)


def load_settings(values: Mapping[str, str], base_dir: Path) -> Settings:
    """Build Settings from string values (environment merged over .env).

    Unknown keys are ignored; missing keys take their defaults; a malformed
    value raises ConfigError naming the setting and the expected form.
    """
    parsed: dict[str, Any] = {"base_dir": base_dir}
    for spec in SPECS:
        raw = values.get(spec.env)
        parsed[spec.field] = spec.parse(spec.env, spec.default if raw is None else raw, base_dir)
    return Settings(**parsed)


def require(settings: Settings, env: str, purpose: str) -> None:
    """Raise ConfigError if the setting named `env` is empty."""
    spec = next(s for s in SPECS if s.env == env)
    value = getattr(settings, spec.field)
    if value in (None, "", ()):
        raise ConfigError(f"{env} is not set; it is needed {purpose}",
                          f"add {env}=... to .env or the environment (see .env.example)")
