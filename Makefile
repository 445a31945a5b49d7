# The two commands of the README. Everything else is in scripts/ and pyproject.toml.
.PHONY: run test setup setup-dev lint bench

run: setup
	.venv/bin/speech-server

test: setup-dev
	.venv/bin/python -m pytest -q -p no:cacheprovider
	.venv/bin/ruff check .
	.venv/bin/mypy .

setup:
	bash scripts/bootstrap.sh

setup-dev:
	bash scripts/bootstrap.sh --dev

lint: setup-dev
	.venv/bin/ruff check .
	.venv/bin/mypy .

bench:
	bash scripts/bootstrap.sh --bench
	.venv/bin/python -m tools.bench $(BENCH_ARGS)
