"""Chapter 7's reference GPT, small enough to read in one sitting (in the spirit of nanoGPT).

One job per module:

- `gpt.data`    builds the character-level Shakespeare corpus (`python -m gpt.data`) and draws training batches;
- `gpt.model`   the GPT itself: attention (a plain path and the fused `scaled_dot_product_attention` path), MLP, blocks;
- `gpt.sample`  sampling with temperature and top-k, and the chat-style prompt template;
- `gpt.configs` the named training configurations (`cpu`, `gpu`, `tiny`);
- `gpt.train`   the training loop (`python -m gpt.train --config cpu`), which writes `runs/<config>/`.
"""
