"""Article formats: the plain-text format and Markdown with front matter."""
