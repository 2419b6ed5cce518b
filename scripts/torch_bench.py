#!/usr/bin/env python3
"""PyTorch baseline for the `engine` bench: the same models and shapes in FP16, timed with
CUDA events. Prints one JSON object (milliseconds) on its last line.

    python3 scripts/torch_bench.py

BERT-base forward at batch 8, seq 128 (eager, and replayed from a CUDA graph); distilgpt2 and
gpt2 with a prompt of 128 at batch 8: prefill, then 32 greedy decode steps with the KV cache
(the mean step). Randomly initialised weights (timing does not depend on their values).
"""
import json
import statistics

import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

BATCH, SEQ, NEW = 8, 128, 32


def time_ms(fn, reps=20, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@torch.no_grad()
def main():
    torch.manual_seed(0)
    dev = "cuda"
    out = {"torch": torch.__version__}

    bert = BertModel(BertConfig(), add_pooling_layer=False).half().to(dev).eval()
    ids = torch.randint(0, 30522, (BATCH, SEQ), device=dev)
    mask = torch.ones_like(ids)
    out["bert_eager_ms"] = time_ms(lambda: bert(input_ids=ids, attention_mask=mask))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            bert(input_ids=ids, attention_mask=mask)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        bert(input_ids=ids, attention_mask=mask)
    out["bert_graph_ms"] = time_ms(graph.replay)

    for name, layers in (("distilgpt2", 6), ("gpt2", 12)):
        model = GPT2LMHeadModel(GPT2Config(n_layer=layers)).half().to(dev).eval()
        prompts = torch.randint(0, 50257, (BATCH, SEQ), device=dev)
        out[f"{name}_prefill_ms"] = time_ms(lambda: model(prompts, use_cache=True))

        def decode():
            res = model(prompts, use_cache=True)
            past, nxt = res.past_key_values, res.logits[:, -1, :].argmax(-1, keepdim=True)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(NEW):
                res = model(nxt, past_key_values=past, use_cache=True)
                past, nxt = res.past_key_values, res.logits[:, -1, :].argmax(-1, keepdim=True)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / NEW

        decode()
        out[f"{name}_decode_step_ms"] = statistics.median(decode() for _ in range(5))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
