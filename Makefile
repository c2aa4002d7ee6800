# The project's commands; each target calls the script that does the work.
.PHONY: test trial soak bench bench-plot images push lint fuzz

test:            ## every quality gate and test suite
	scripts/test

trial:           ## the local pod trial with docker compose
	scripts/trial

SOAK_MINUTES ?= 30
soak:            ## the trial under load and faults for 30 min (not in CI): make soak SOAK_MINUTES=3
	SOAK_MINUTES=$(SOAK_MINUTES) scripts/soak

bench:           ## benchmarks against the anchor tools (bench/run NAME for one)
	bench/run

bench-plot:      ## the history of the benchmarks' ratios as a PNG (build/bench/ratios.png)
	bench/plot

images:          ## build the four images (and the pause image)
	docker/images

push:            ## push and sign the images: make push REGISTRY=... COSIGN_KEY=... COSIGN_PASSWORD=...
	REGISTRY=$(REGISTRY) docker/push

lint:            ## ruff, mypy, import contracts and hadolint only
	scripts/setup && scripts/lint

FUZZ_SECONDS ?= 600
fuzz:            ## fuzz every parser, FUZZ_SECONDS each (make fuzz FUZZ_TARGETS="chunked_body")
	scripts/setup && .venv/bin/python -m tests.fuzz run --seconds $(FUZZ_SECONDS) --keep .cache/fuzz $(FUZZ_TARGETS)
