#!/usr/bin/env bash
# Fuzzes what users hand rightsize (harness/bad_input.rs): scenario TOML, profile JSON,
# Hugging Face config.json, safetensors files and tokenizer input, each for RUNS inputs
# (default 10^6) with cargo-fuzz on the nightly toolchain. Installs cargo-fuzz if missing.
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
runs=${1:-1000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(scenario_toml profile_json hf_config_json safetensors tokenizer_input)
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
python3 fuzz/seeds.py
cd fuzz
cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
    start=$(date +%s)
    cargo +nightly fuzz run -O "$t" -- -runs="$runs" -rss_limit_mb=4096 2>&1 | tail -n 1
    echo "$t: $runs runs, no crash, $(( $(date +%s) - start )) s"
done
