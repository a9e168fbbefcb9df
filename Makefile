# Tamga: `make demo` runs one applicant through the kiosk on simulated devices; `make test` runs the checks.
PY := .venv/bin/python
OUT ?= demo-out

.PHONY: bootstrap demo demo-flows test lint unit bench clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m kiosk.demo --out $(OUT)

demo-flows: bootstrap
	for flow in issuance renewal revocation unblock check; do $(PY) -m kiosk.demo --flow $$flow --out $(OUT)/$$flow || exit 1; done

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy

test: bootstrap lint
	$(PY) -m pytest -p no:cacheprovider

unit: bootstrap
	$(PY) -m pytest tests/unit -q

bench: bootstrap
	$(PY) -m bench

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
