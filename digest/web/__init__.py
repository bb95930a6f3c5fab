"""`digest serve`: the static site, sign-up and unsubscribe over HTTP."""
