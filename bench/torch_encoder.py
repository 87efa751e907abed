"""PyTorch's numbers for the work of trainer/examples/bench_encoder.rs: MiniLM on CPU, batch
32 x 128 tokens (the same token ids), forward, and forward + backward through LoRA (peft: r 8,
alpha 16, dropout 0.1 on query and value), with as many threads as candle uses.

Run with bench/torch.sh, which installs torch, transformers and peft into a virtual environment.
"""
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

folder = sys.argv[1] if len(sys.argv) > 1 else "data/models/all-MiniLM-L6-v2"
threads = int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads()
torch.set_num_threads(threads)
batch, length, rounds = 32, 128, 5
ids = torch.tensor(
    [[101] + [2000 + (r * 131 + i * 17) % 20000 for i in range(length - 2)] + [102] for r in range(batch)]
)
mask = torch.ones_like(ids)
tokens = batch * length * rounds

model = AutoModel.from_pretrained(folder).eval()
with torch.no_grad():
    model(input_ids=ids, attention_mask=mask)  # warm-up
    start = time.perf_counter()
    for _ in range(rounds):
        model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    forward = tokens / (time.perf_counter() - start)

lora = get_peft_model(
    model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"])
).train()


def step():
    lora(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0].pow(2).sum().backward()


step()  # warm-up, two rounds as on the candle side
step()
start = time.perf_counter()
for _ in range(rounds):
    step()
backward = tokens / (time.perf_counter() - start)

a, b = torch.randn(batch * length, 384), torch.randn(1536, 384)
a @ b.T  # warm-up
start = time.perf_counter()
for _ in range(20):
    a @ b.T
gflops = 2 * batch * length * 384 * 1536 * 20 / (time.perf_counter() - start) / 1e9

print(
    f"PyTorch {torch.__version__}, MiniLM CPU, batch {batch} x {length} tokens, {rounds} rounds, {threads} threads, "
    f"{torch.backends.cpu.get_cpu_capability().lower()} path"
)
print(f"matmul {batch * length} x 384 x 1536:      {gflops:>8.0f} GFLOP/s")
print(f"forward:                    {forward:>8.0f} tokens/s")
print(f"forward + backward (LoRA):  {backward:>8.0f} tokens/s")
