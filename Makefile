# `make test` is the whole suite: install what it needs, lint, type-check, run every test.
.PHONY: test setup lint bench run image

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

# The dockdns image with no registry: wheels of this tree on a base made from this machine's
# Python (cached by a hash of its files). IMAGE=name:tag to name it, BASE=python:3.11-slim to
# start from a registry's image instead.
IMAGE ?= dockdns:latest
image:
	python3 deploy/image.py --tag $(IMAGE) $(if $(BASE),--base $(BASE))
