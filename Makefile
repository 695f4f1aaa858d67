# `make test` is the whole suite: install what it needs, lint, type-check, run every test.
.PHONY: test setup lint bench run

setup:
	bash tests/setup.sh

lint:
	python3 -m ruff check .
	python3 -m mypy

test: setup lint
	python3 -m pytest

run:
	python3 -m pip install -q . && dockdns serve

# dockdns against dnsmasq and Docker's own DNS with dnsperf: writes benchmarks/RESULTS.md.
bench:
	python3 -m benchmarks.run
