# The two entry points the README names, plus the GPU workflow.
.PHONY: setup run test gpu-build gpu-run

setup:
	bash scripts/setup.sh

# Main job (on a GPU machine): for now, what the GPU offers.
run: setup
	cargo run --release --bin rightsize -- info

# Tests: CPU tests everywhere; GPU tests are listed as ignored without a GPU.
test: setup
	cargo test

gpu-build:
	bash scripts/gpu-build.sh

gpu-run:
	bash scripts/gpu-run.sh
