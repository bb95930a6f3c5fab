"""Publishing: article files in, feeds and the static site out."""
