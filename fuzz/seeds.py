#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora under fuzz/corpus/: the scenario files and committed
profiles, Hugging Face configs of each family, whole safetensors checkpoints of the fuzz
targets' tiny GPT-2 (F16 and F32) and text for the tokenizer. Run by scripts/fuzz.sh."""
import glob, json, os, shutil, struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
def out(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

here = os.path.dirname(os.path.abspath(__file__))
for p in glob.glob(os.path.join(here, "..", "scenarios", "*.toml")):
    out("scenario_toml", os.path.basename(p), open(p, "rb").read())
for p in glob.glob(os.path.join(here, "..", "profiles", "*", "*.json"))[:3]:
    out("profile_json", os.path.basename(p), open(p, "rb").read())

configs = {
    "bert": {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 128, "vocab_size": 10, "max_position_embeddings": 64, "type_vocab_size": 2,
             "hidden_act": "gelu"},
    "gpt2": {"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 1, "vocab_size": 10, "n_positions": 8,
             "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "n_inner": None},
    "llama": {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "intermediate_size": 128, "vocab_size": 10, "max_position_embeddings": 64,
              "rope_theta": 10000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0,
                                                      "original_max_position_embeddings": 8192}},
}
for name, c in configs.items():
    out("hf_config_json", name + ".json", json.dumps(c))

# harness::bad_input::tiny_gpt2: width 32, one layer, vocabulary 10, 8 positions.
h, v, p = 32, 10, 8
shapes = [("wte.weight", [v, h]), ("wpe.weight", [p, h]), ("h.0.ln_1.weight", [h]), ("h.0.ln_1.bias", [h]),
          ("h.0.attn.c_attn.weight", [h, 3 * h]), ("h.0.attn.c_attn.bias", [3 * h]),
          ("h.0.attn.c_proj.weight", [h, h]), ("h.0.attn.c_proj.bias", [h]), ("h.0.ln_2.weight", [h]),
          ("h.0.ln_2.bias", [h]), ("h.0.mlp.c_fc.weight", [h, 4 * h]), ("h.0.mlp.c_fc.bias", [4 * h]),
          ("h.0.mlp.c_proj.weight", [4 * h, h]), ("h.0.mlp.c_proj.bias", [h]), ("ln_f.weight", [h]),
          ("ln_f.bias", [h])]
for dtype, size in (("F16", 2), ("F32", 4)):
    header, offset = {}, 0
    for name, shape in shapes:
        n = 1
        for x in shape:
            n *= x
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n * size]}
        offset += n * size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    out("safetensors", "tiny-" + dtype + ".safetensors",
        struct.pack("<Q", len(text)) + text + bytes((i * 7) % 251 for i in range(offset)))

# harness::bad_input::tokenizer_input: the token limit, then lines of text.
out("tokenizer_input", "plain", b"\x08the cats sat on the mat.\nthe cat")
out("tokenizer_input", "mixed", "\x40Caf\u00e9 \u4e2d\u6587 ##s [CLS] [SEP]\n\n.".encode())
