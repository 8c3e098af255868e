# The two commands of the README, plus the ones developers use every day.
.PHONY: setup setup-test setup-bench run test lint bench clean

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

setup-bench:
	bash scripts/setup.sh --bench

## Run the whole local stack and load the example timeline; Ctrl-C stops it.
run: setup
	.venv/bin/accordwatch run

## Set up and run the whole test suite (what CI runs).
test: setup-test
	.venv/bin/python -m pytest

lint: setup-test
	.venv/bin/ruff check .
	.venv/bin/mypy schemas services tests bench

bench: setup-bench
	.venv/bin/python bench/ingest.py
	.venv/bin/python bench/projector.py
	.venv/bin/python bench/alerts.py
	.venv/bin/python bench/cluster.py

clean:
	rm -rf .local
