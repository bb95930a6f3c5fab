"""The `digest` command line: the only layer that reads the environment."""
