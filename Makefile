# The commands the README promises. `make demo` and `make test` each set up
# everything they need (a virtual environment in .venv) on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint install bench clean

$(BIN)/digest: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/digest

install: $(BIN)/digest

# Publish the sample articles in articles/ to public/ and say where the feed is.
demo: install
	@test -f .env || { sed "s/^SECRET_KEY=$$/SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')/" .env.example > .env && echo "wrote .env (with a new SECRET_KEY)"; }
	$(BIN)/digest publish
	@echo "feed: public/feed.atom  site: public/index.html  (serve it: $(BIN)/digest serve)"

# The whole test suite (PostgreSQL tests run when a server listens on 127.0.0.1:5432).
test: install
	$(BIN)/python -m pytest -q

# The suite without the wall-clock tests marked `slow` (a real minute boundary, browsers).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check digest tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Publish and mail delivery speed against floors measured in the same run. The mail part
# is bounded: one delivery of 10,000 messages between two floor runs (1-2 minutes here);
# run bench/bench_send.py --repeat 3 (or --database-url postgresql://...) for more.
bench: install
	$(BIN)/python bench/bench_publish.py
	$(BIN)/python bench/bench_send.py --recipients 10000 --repeat 1

clean:
	rm -rf $(VENV) public .public.generations digest.sqlite3* .pytest_cache .mypy_cache .ruff_cache
