"""A harness tenant that runs a Hugging Face transformers model in PyTorch.

``rightsize compare`` starts one of these per PyTorch tenant (``engine = "torch"`` in a
scenario) as ``python3 -c <this file> <spec>``, where ``<spec>`` is the JSON of the harness's
worker spec with the model's architecture added (``config``). It speaks the harness's worker
protocol in JSON lines: it opens the GPU and says whether its driver shares its contexts
through MPS (``opened``; the harness fails the run unless that is what the mode needs), builds
the model with random FP16 weights (no hub access) and warms up; then the package's native
module runs the harness's own request loop with a request of this model
(``_native.serve_worker``: ``ready``, ``go``, arrivals, phases, queue limits, ``progress``,
``warm``, ``finished``, ``stop`` and the samples, exactly as for the engine's workers). It
needs the ``rightsize`` package in the Python that runs it (``pip install .`` in the
repository).

A request is one forward of an encoder, or a decoder's prefill and then greedy decode steps
with the KV cache, each followed by a synchronize; the host's view, as the engine's tenants.
"""

import json
import sys


# The harness reads this process's stdout line by line: the protocol's lines only. Once the
# native loop runs (it writes to the same descriptor), Python's own prints go to stderr, so a
# library's output cannot break a protocol line.
PROTOCOL = sys.stdout


def emit(event, **fields):
    fields["event"] = event
    PROTOCOL.write(json.dumps(fields) + "\n")
    PROTOCOL.flush()


CU_DEVICE_ATTRIBUTE_MPS_ENABLED = 133


def mps_enabled(ordinal, libcuda=None):
    """Whether this process's contexts on GPU ``ordinal`` are shared through MPS (the driver's
    ``CU_DEVICE_ATTRIBUTE_MPS_ENABLED``, read through libcuda: PyTorch does not expose it)."""
    import ctypes

    cuda = libcuda or ctypes.CDLL("libcuda.so.1")
    device, value = ctypes.c_int(), ctypes.c_int()

    def check(call, code):
        if code != 0:
            raise RuntimeError(f"cannot read whether this worker is attached to MPS: {call} returned CUresult {code}")

    check("cuInit", cuda.cuInit(0))
    check("cuDeviceGet", cuda.cuDeviceGet(ctypes.byref(device), ordinal))
    attribute = CU_DEVICE_ATTRIBUTE_MPS_ENABLED
    check("cuDeviceGetAttribute(MPS_ENABLED)", cuda.cuDeviceGetAttribute(ctypes.byref(value), attribute, device))
    return value.value != 0


def hf_model(config, seed):
    """The transformers model of the harness's architecture ``config``, random FP16 weights
    on the GPU, in eval mode; and whether it is a decoder."""
    import torch
    import transformers as tf

    family = config["family"]
    common = dict(
        vocab_size=config["vocab"],
        hidden_size=config["hidden"],
        num_hidden_layers=config["layers"],
        num_attention_heads=config["heads"],
        intermediate_size=config["ffn"],
        max_position_embeddings=config["max_positions"],
    )
    if family == "bert":
        cfg = tf.BertConfig(type_vocab_size=max(config["type_vocab"], 1), layer_norm_eps=config["norm_eps"], **common)
        cls, decoder = tf.BertModel, False
    elif family == "gpt2":
        cfg = tf.GPT2Config(
            vocab_size=config["vocab"],
            n_embd=config["hidden"],
            n_layer=config["layers"],
            n_head=config["heads"],
            n_inner=config["ffn"],
            n_positions=config["max_positions"],
            layer_norm_epsilon=config["norm_eps"],
        )
        cls, decoder = tf.GPT2LMHeadModel, True
    elif family == "llama":
        # RoPE's base and scaling are left at transformers' defaults: they change the
        # rotation's constants, not the work.
        extra = {}
        if config["head_dim"] != config["hidden"] // config["heads"]:
            extra["head_dim"] = config["head_dim"]
        cfg = tf.LlamaConfig(
            num_key_value_heads=config["kv_heads"],
            rms_norm_eps=config["norm_eps"],
            tie_word_embeddings=config["tie_embeddings"],
            **extra,
            **common,
        )
        cls, decoder = tf.LlamaForCausalLM, True
    else:
        raise ValueError(f"unknown model family {family!r}")
    torch.manual_seed(seed)
    with torch.device("cuda"):
        model = cls(cfg)
    return model.half().eval(), decoder


def torch_request(spec):
    """One request of the spec's tenant, as a function of no arguments."""
    import torch

    tenant = spec["tenant"]
    model, decoder = hf_model(spec["config"], spec["seed"])
    gen = torch.Generator(device="cuda").manual_seed(spec["seed"])
    ids = torch.randint(0, spec["config"]["vocab"], (tenant["batch"], tenant["seq"]), device="cuda", generator=gen)
    steps = max(tenant["new_tokens"], 1) - 1

    @torch.inference_mode()
    def request():
        if not decoder:
            model(input_ids=ids)
        else:
            out = model(input_ids=ids, use_cache=True)
            for _ in range(steps):
                token = out.logits[:, -1:].argmax(dim=-1)
                out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
        torch.cuda.synchronize()

    return request


def main(argv):
    try:
        spec = json.loads(argv[1])
        try:
            from rightsize import _native
        except ImportError as e:
            raise RuntimeError(
                "PyTorch tenants need the rightsize Python package in the Python that runs them "
                f"($RIGHTSIZE_PYTHON, else python3): `pip install .` in the repository ({e})"
            ) from None
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise RuntimeError(f"PyTorch tenants need PyTorch and transformers: {e}") from None
        if not torch.cuda.is_available():
            raise RuntimeError("PyTorch sees no CUDA GPU")
        torch.zeros(1, device="cuda")  # opens the GPU (makes its context) before asking
        emit("opened", mps=mps_enabled(torch.cuda.current_device()))
        request = torch_request(spec)
        for _ in range(2):
            request()
        sys.stdout = sys.stderr
        _native.serve_worker(argv[1], request)
        return 0
    except Exception as e:  # every failure is reported to the harness as a message
        emit("error", message=f"{type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
