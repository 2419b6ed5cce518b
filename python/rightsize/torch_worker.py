"""A harness tenant that runs a Hugging Face transformers model in PyTorch.

``rightsize compare`` starts one of these per PyTorch tenant (``engine = "torch"`` in a
scenario) as ``python3 -c <this file> <spec>``, where ``<spec>`` is the JSON of the harness's
worker spec with the model's architecture added (``config``). It speaks the harness's worker
protocol in JSON lines: it opens the GPU and says whether its driver shares its contexts
through MPS (``opened``; the harness fails the run unless that is what the mode needs), builds
the model with random FP16 weights (no hub access), warms up, says ``ready``, waits for ``go``
on stdin, runs its request loop — closed, or open with Poisson arrivals — reports
``progress``, says ``finished`` once it has counted its requests, keeps issuing until ``stop``
(or end of input) and sends its samples (seconds from ``go``).

A request is one forward of an encoder, or a decoder's prefill and then greedy decode steps
with the KV cache, each followed by a synchronize; the host's view, as the engine's tenants.
"""

import json
import random
import sys
import threading
import time


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


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


class Gate:
    """The harness's side of the loop: ``ready``/``go`` to start, ``warm`` once every worker
    has issued its warm-up (counting starts then), ``stop`` to end."""

    def __init__(self, stdin=None):
        self.stdin = stdin or sys.stdin
        self.stop = threading.Event()
        self.all_warm = threading.Event()

    def start(self):
        emit("ready")
        if self.stdin.readline().strip() != "go":
            raise RuntimeError("the harness called the run off")
        t0 = time.monotonic()

        def watch():
            # `warm`; then `stop`, or end of input (the harness is gone): stop either way.
            for line in self.stdin:
                if line.strip() == "warm":
                    self.all_warm.set()
                if line.strip() == "stop":
                    break
            self.all_warm.set()
            self.stop.set()

        threading.Thread(target=watch, daemon=True).start()
        return t0


def run_loop(spec, gate, request, clock=time.monotonic, sleep=time.sleep):
    """The request loop of the harness's worker spec: returns the counted samples."""
    tenant = spec["tenant"]
    rate = tenant.get("rate")
    warmup, requests = spec["warmup"], spec["requests"]
    duration = spec.get("duration_s")
    rng = random.Random(spec["arrival_seed"])
    t0 = gate.start()
    arrival = 0.0
    issued, counted, finished, warm, counting = 0, [], False, warmup == 0, False
    if warm:
        emit("warm")
    while not (finished and gate.stop.is_set()):
        if rate:
            arrival += rng.expovariate(rate)
            due = arrival
            wait = t0 + due - clock()
            while wait > 0 and not (finished and gate.stop.is_set()):
                sleep(min(wait, 0.05))
                wait = t0 + due - clock()
            if finished and gate.stop.is_set():
                break
        else:
            due = clock() - t0
        start = max(clock() - t0, due)
        all_warm = gate.all_warm.is_set()
        request()
        end = clock() - t0
        index, issued = issued, issued + 1
        if not warm and issued >= warmup:
            warm = True
            emit("warm")
        if finished:
            continue
        late = duration is not None and end > duration
        counting = counting or (index >= warmup and all_warm)
        if counting and not late:
            counted.append({"due": due, "start": start, "end": end})
            emit("progress", counted=len(counted))
        if len(counted) >= requests or late:
            finished = True
            emit("finished")
    return counted


def main(argv):
    try:
        spec = json.loads(argv[1])
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
        samples = run_loop(spec, Gate(), request)
        emit("result", samples=samples)
        return 0
    except Exception as e:  # every failure is reported to the harness as a message
        emit("error", message=f"{type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
