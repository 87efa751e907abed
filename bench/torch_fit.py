"""PyTorch's time for the encoder work of one `lora` training step of bench_fit (the same batches:
each distinct code once per channel, calls of length-sorted texts of at most `chunk_tokens`
padded tokens, each channel through its own LoRA adapter over one base, [CLS] vectors),
forward and backward. PyTorch keeps every call's graph for one backward pass; the Rust trainer
replays each call instead (one more forward) to bound memory. The fusion head and loss are left
out here (a sum of squares stands in): they are small next to the encoder.

Run with bench/torch.sh after bench_fit has written its batches (NAICS_BENCH_BATCHES).
"""
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

batches = json.load(open(sys.argv[1]))
threads = int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads()
torch.set_num_threads(threads)
budget = batches["chunk_tokens"]


def calls(lengths):
    """Positions sorted by length, cut so that no call pads more than `budget` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out, call = [], []
    for i in order:
        if call and (len(call) + 1) * max(lengths[i], 1) > budget:
            out.append(call)
            call = []
        call.append(i)
    if call:
        out.append(call)
    return out


config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"])
model = get_peft_model(AutoModel.from_pretrained(batches["model"]), config, adapter_name="c0")
for c in range(1, 4):
    model.add_adapter(f"c{c}", config)
model.train()

times = []
for step in batches["steps"]:
    start = time.perf_counter()
    vectors = []
    for c, rows in enumerate(step):
        model.set_adapter(f"c{c}")
        for call in calls([len(r) for r in rows]):
            width = max(len(rows[i]) for i in call)
            ids = torch.tensor([rows[i] + [0] * (width - len(rows[i])) for i in call])
            mask = torch.tensor([[1] * len(rows[i]) + [0] * (width - len(rows[i])) for i in call])
            vectors.append(model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0])
    torch.cat(vectors).pow(2).sum().backward()
    times.append(time.perf_counter() - start)
# The first step is a warm-up, untimed as in bench_fit (allocators grow to their peak there).
times = times[1:]

codes = sum(len(s[0]) for s in batches["steps"][1:]) / len(times)
seconds = sum(times) / len(times)
print(f"PyTorch {torch.__version__}, {threads} threads: {seconds:8.2f} s/step ({1 / seconds:.3f} steps/s; {codes:.0f} distinct codes per step)")
