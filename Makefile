# Tamga: `make demo` runs one applicant through the kiosk on simulated devices; `make test` runs the checks.
PY := .venv/bin/python
OUT ?= demo-out

.PHONY: bootstrap demo demo-flows test lint unit bench clean

bootstrap:
	@scripts/bootstrap.sh

# With a display: the touchscreen app in a window on the simulated devices; without one, the app driven
# offscreen through every flow, a screenshot of every screen at both sizes in $(OUT)/screens/.
demo: bootstrap
	$(PY) -m kiosk.demo --out $(OUT)
	if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(PY) -m kiosk.screens.drive --window; \
	else for size in 800x480 1024x600; do for visits in issuance,check,unblock,revocation,idle,errors renewal; do \
	$(PY) -m kiosk.screens.drive --out $(OUT)/screens --size $$size --flows $$visits || exit 1; done; done; fi

demo-flows: bootstrap
	for flow in issuance renewal revocation unblock check; do $(PY) -m kiosk.demo --flow $$flow --out $(OUT)/$$flow || exit 1; done

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy

# One worker per core (at most 4), a test file per worker: each worker has its own pcscd and central.
test: bootstrap lint
	$(PY) -m pytest -p no:cacheprovider -n auto --maxprocesses 4 --dist loadfile

unit: bootstrap
	$(PY) -m pytest tests/unit -q

bench: bootstrap
	$(PY) -m bench

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
