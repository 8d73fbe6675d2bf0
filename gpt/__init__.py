"""Chapter 7's reference GPT, small enough to read in one sitting (in the spirit of nanoGPT).

One job per module:

- `gpt.data`    builds the character-level Shakespeare corpus (`python -m gpt.data`) and draws training batches;
- `gpt.model`   the GPT itself: attention (a plain path and the fused `scaled_dot_product_attention` path), MLP, blocks;
- `gpt.sample`  sampling with temperature and top-k, and the chat-style prompt template;
- `gpt.configs` the named training configurations (`cpu-fast`, `cpu`, `gpu`, `tiny`);
- `gpt.train`   the training loop (`python -m gpt.train`, or under `torchrun` for several processes), which writes
  `runs/<config>/`.
"""
import os
import sys

# Threads that wait at the end of a parallel region sleep instead of spinning (libgomp's default is to spin first).
# On a quiet machine this costs little; next to another busy program, spinning threads take the cores the working
# thread needs and training slows many times over (`make bench-train` measures both). libgomp reads this once, when
# torch loads it, so it only applies where `gpt` is imported before torch (`python -m gpt.train`, torchrun) and the
# user has not chosen a policy.
if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
