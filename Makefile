# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: all venv test lint demo report bench-report bench clean

all: test

# The test extra brings scrapyd, scrapyd-client and setuptools<81 (tests/test_scrapyd.py).
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PY) -m pytest

demo: venv
	$(PY) -m demo

report: venv
	$(PY) -m scrapy report --html report/

bench-report: venv
	$(PY) -m benchmarks.report_100k

# The crawl against a bare client at 10^3, 10^4, 10^5 domains (issue 9); e.g.
# `make bench BENCH_ARGS="--sizes 1000 --delay 0,50 --postgresql --openssl 200"`, `--huge` adds 10^6.
bench: venv
	$(PY) -m benchmarks.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo report build *.egg-info
