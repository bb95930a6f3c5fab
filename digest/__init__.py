"""digest: publish a folder of articles as feeds, a static site and an email digest."""

__version__ = "0.1.0"
