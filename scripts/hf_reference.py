#!/usr/bin/env python3
"""Exports randomly initialised BERT, GPT-2 and Llama-style models with Hugging Face
transformers (FP16, safetensors) and records PyTorch's outputs for the same inputs, so the
engine can be checked against them (tests/gpu/engine.rs::transformers_parity).

    python3 scripts/hf_reference.py OUT_DIR [SEED]

Writes OUT_DIR/{bert,gpt2,llama}/ (config.json, model.safetensors) and
OUT_DIR/expected.safetensors: for BERT the input ids, valid lengths and last hidden states;
for each decoder the prompts, the logits of each prompt's last token, 32 greedily generated
tokens and the logits PyTorch chose each of them from. Also OUT_DIR/gpt2_text/: a small GPT-2
with a word-level tokenizer.json, and expected.json with a prompt, its token ids, 16 greedy
tokens, their text, and PyTorch's largest logit and top-2 margin at each step. Needs a CUDA GPU, torch,
transformers, tokenizers and safetensors.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

BATCH, SEQ, PROMPT, NEW = 8, 64, 16, 32
DECODE_BATCH = 20  # 90% of sequences must match token for token: 18 of 20


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    torch.manual_seed(seed)
    dev = "cuda"
    expected = {}
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, seed {seed}")

    def export(model, name):
        model = model.half().to(dev).eval()
        model.save_pretrained(os.path.join(out, name))
        return model

    # BERT-base width and depth, random weights; padded batch.
    bert = export(BertModel(BertConfig(), add_pooling_layer=False), "bert")
    ids = torch.randint(0, bert.config.vocab_size, (BATCH, SEQ), device=dev)
    lens = torch.randint(1, SEQ + 1, (BATCH,), device=dev)
    lens[0] = SEQ
    mask = (torch.arange(SEQ, device=dev)[None, :] < lens[:, None]).long()
    with torch.no_grad():
        hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    expected.update(bert_ids=ids.int(), bert_lens=lens.int(), bert_hidden=hidden.half())

    # GPT-2 (124M shape) and a Llama-style model with GQA and Llama 3 RoPE scaling.
    gpt2 = export(GPT2LMHeadModel(GPT2Config()), "gpt2")
    rope = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
    llama_kw = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                    num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=131072,
                    rms_norm_eps=1e-5, tie_word_embeddings=False)
    if int(transformers.__version__.split(".")[0]) >= 5:
        llama_cfg = LlamaConfig(**llama_kw, rope_parameters={"rope_theta": 500000.0, **rope})
    else:
        llama_cfg = LlamaConfig(**llama_kw, rope_theta=500000.0, rope_scaling=rope)
    llama = export(LlamaForCausalLM(llama_cfg), "llama")

    for name, model in (("gpt2", gpt2), ("llama", llama)):
        prompts = torch.randint(0, model.config.vocab_size, (DECODE_BATCH, PROMPT), device=dev)
        with torch.no_grad():
            logits = model(prompts).logits[:, -1, :]
            result = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                                    max_new_tokens=NEW, min_new_tokens=NEW, pad_token_id=0,
                                    output_scores=True, return_dict_in_generate=True)
        expected[f"{name}_prompts"] = prompts.int()
        expected[f"{name}_logits"] = logits.half()
        expected[f"{name}_tokens"] = result.sequences[:, PROMPT:].int()
        # PyTorch's logits at every generated step, [batch][step][vocab], to tell a divergence
        # at an FP16 near-tie from a real one.
        expected[f"{name}_scores"] = torch.stack(result.scores, dim=1).half()

    save_file({k: v.contiguous().cpu() for k, v in expected.items()}, os.path.join(out, "expected.safetensors"))
    text_model(os.path.join(out, "gpt2_text"), dev)
    print("wrote", out)


def text_model(out, dev):
    """A 2-layer GPT-2 over a word-level vocabulary, its tokenizer.json, and greedy text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", ".", ","]
    words += [f"w{i}" for i in range(500)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok)
    cfg = GPT2Config(vocab_size=len(words), n_positions=64, n_embd=256, n_layer=2, n_head=4,
                     initializer_range=0.2)
    model = GPT2LMHeadModel(cfg).half().to(dev).eval()
    model.save_pretrained(out)
    prompt = "the cat sat on the mat ."
    ids = hf_tok(prompt)["input_ids"]
    new = 16
    with torch.no_grad():
        x = torch.tensor([ids], device=dev)
        result = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=new,
                                min_new_tokens=new, pad_token_id=0, output_scores=True,
                                return_dict_in_generate=True)
    generated = result.sequences[0, len(ids):].tolist()
    margins, tops = [], []
    for step in result.scores:
        top = torch.topk(step[0].float(), 2).values
        margins.append(float(top[0] - top[1]))
        tops.append(float(top[0]))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"prompt": prompt, "prompt_ids": ids, "generated": generated,
                   "text": hf_tok.decode(generated, clean_up_tokenization_spaces=False), "margins": margins,
                   "tops": tops}, f)


if __name__ == "__main__":
    main()
