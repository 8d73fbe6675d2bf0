"""Plausible wrong answers for chapter 7 (`07_training`) and exactly which test cells each must lose."""


def _edit(source, old, new):
    assert old in source, old
    return source.replace(old, new)


GET_BATCH_NO_SHIFT = '''
def get_batch(data, block_size, batch_size, generator=None):
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = data[starts[:, None] + torch.arange(block_size)]
    return x, x.clone()          # forgot the shift: the model is asked to copy, not to predict
'''

GET_BATCH_NEVER_LAST = '''
def get_batch(data, block_size, batch_size, generator=None):
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)   # off by one
    window = data[starts[:, None] + torch.arange(block_size + 1)]
    return window[:, :-1], window[:, 1:]
'''

GET_BATCH_GLOBAL_RNG = '''
def get_batch(data, block_size, batch_size, generator=None):
    starts = torch.randint(len(data) - block_size, (batch_size,))          # ignores the generator
    window = data[starts[:, None] + torch.arange(block_size + 1)]
    return window[:, :-1], window[:, 1:]
'''

LOSS_SUM = '''
def next_token_loss(logits, targets):
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(logits, dim=-1) - picked).sum()               # sum, not mean
'''

LOSS_NAIVE = '''
def next_token_loss(logits, targets):
    probs = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)   # overflows for large logits
    return -torch.log(probs.gather(-1, targets.unsqueeze(-1))).mean()
'''

LOSS_DETACHED = '''
def next_token_loss(logits, targets):
    logits = logits.detach()                                              # cuts the graph
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(logits, dim=-1) - picked).mean()
'''

LOSS_LIBRARY = '''
def next_token_loss(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
'''

LR = '''
def lr_at(it, max_lr, warmup, max_iters, min_lr):
    if it < warmup:
        return max_lr * (it + 1) / warmup
    if it >= max_iters:
        return min_lr
    progress = (it - warmup) / (max_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
'''
LR_FROM_ZERO = _edit(LR, "max_lr * (it + 1) / warmup", "max_lr * it / warmup")      # step 0 has learning rate 0
LR_TO_ZERO = _edit(LR, "min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)",
                   "0.5 * (1.0 + math.cos(math.pi * progress)) * max_lr")           # decays to 0, not to min_lr
LR_LINEAR = _edit(LR, "min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)",
                  "max_lr - progress * (max_lr - min_lr)")                          # linear, not cosine

SAMPLE = '''
def sample_next(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
'''
SAMPLE_GLOBAL_RNG = _edit(SAMPLE, ", 1, generator=generator)", ", 1)")               # ignores the generator
SAMPLE_TIMES_T = _edit(SAMPLE, "logits / temperature", "logits * temperature")      # multiplies instead of dividing
SAMPLE_MASK_ZERO = _edit(SAMPLE, 'logits < kth, float("-inf")', "logits < kth, 0.0")   # 0 is not "impossible"
SAMPLE_BATCH_KTH = _edit(SAMPLE, "torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]",
                         "torch.topk(logits.flatten(), top_k).values[-1]")          # one threshold for the batch

CHAT_NO_CUE = '''
SYSTEM_KO = "아래는 사용자와 유능하고 매우 지능적인 AI 조수의 대화이다."


def chat_prompt(messages, system=SYSTEM_KO, user="사용자", assistant="AI"):
    names = {"user": user, "assistant": assistant}
    parts = [system.strip() + "\\n\\n"]
    for message in messages:
        if message["role"] not in names:
            raise ValueError(message["role"])
        parts.append(f"{names[message['role']]}:\\n{message['content'].strip()}\\n\\n")
    return "".join(parts)                                                 # no cue for the assistant
'''

WRONG_ANSWERS = [
    {"why": "get_batch returns y = x (no shift by one)",
     "says": "The target at t is the token at t + 1",
     "replace": {"get_batch": GET_BATCH_NO_SHIFT}, "loses": ["test_get_batch_shapes"]},
    {"why": "get_batch draws starts from randint(len - block - 1): the last window never comes up",
     "says": "The last window never came up",
     "replace": {"get_batch": GET_BATCH_NEVER_LAST}, "loses": ["test_get_batch_windows"]},
    {"why": "get_batch ignores the generator (global RNG)",
     "says": "generators seeded 11 and 12 gave the same draw",
     "replace": {"get_batch": GET_BATCH_GLOBAL_RNG}, "loses": ["test_get_batch_windows"]},
    {"why": "next_token_loss sums instead of averaging",
     "says": "That is the sum over the 6 positions",
     "replace": {"next_token_loss": LOSS_SUM}, "loses": ["test_next_token_loss_value"]},
    {"why": "next_token_loss exponentiates raw logits (overflow at 1000)",
     "says": "subtract the row maximum before exp",
     "replace": {"next_token_loss": LOSS_NAIVE}, "loses": ["test_next_token_loss_stability"]},
    {"why": "next_token_loss detaches the logits (no gradient)",
     "says": "something on the way detached it",
     "replace": {"next_token_loss": LOSS_DETACHED}, "loses": ["test_next_token_loss_grad"]},
    {"why": "shortcut: F.cross_entropy",
     "replace": {"next_token_loss": LOSS_LIBRARY},
     "says": "calls torch.nn.functional.cross_entropy",
     "loses": ["test_next_token_loss_value", "test_next_token_loss_stability", "test_next_token_loss_grad"]},
    {"why": "lr_at warms up from 0 (it / warmup)",
     "says": "it does not start from 0",
     "replace": {"lr_at": LR_FROM_ZERO}, "loses": ["test_lr_at_warmup"]},
    {"why": "lr_at decays to 0 instead of min_lr",
     "says": "the decay ends at min_lr, not 0",
     "replace": {"lr_at": LR_TO_ZERO}, "loses": ["test_lr_at_cosine"]},
    {"why": "lr_at decays linearly",
     "says": "That is a straight line from max_lr to min_lr",
     "replace": {"lr_at": LR_LINEAR}, "loses": ["test_lr_at_cosine"]},
    {"why": "sample_next ignores the generator",
     "says": "generators seeded 11 and 12 gave the same draw",
     "replace": {"sample_next": SAMPLE_GLOBAL_RNG}, "loses": ["test_sample_next_frequencies"]},
    {"why": "sample_next multiplies the logits by the temperature",
     "says": "at temperature 0.01 every draw should be the argmax",
     "replace": {"sample_next": SAMPLE_TIMES_T}, "loses": ["test_sample_next_temperature"]},
    {"why": "sample_next sets logits outside the top k to 0 instead of -inf",
     "says": "only the two largest logits of each row may be drawn",
     "replace": {"sample_next": SAMPLE_MASK_ZERO}, "loses": ["test_sample_next_top_k"]},
    {"why": "sample_next takes one k-th largest threshold over the whole batch",
     "says": "token 3 was drawn with frequency 1.0000",
     "replace": {"sample_next": SAMPLE_BATCH_KTH}, "loses": ["test_sample_next_top_k"]},
    {"why": "chat_prompt, the warm-up, left unwritten: costs nothing",
     "replace": {"chat_prompt": 'SYSTEM_KO = "아래는 사용자와 유능하고 매우 지능적인 AI 조수의 대화이다."\n\n\n'
                                'def chat_prompt(messages, system=SYSTEM_KO, user="사용자", assistant="AI"):\n'
                                '    raise NotImplementedError()\n'},
     "loses": []},
    {"why": "chat_prompt, the warm-up, leaves out the final assistant cue: costs nothing",
     "replace": {"chat_prompt": CHAT_NO_CUE}, "loses": []},
]

TOP_P = '''
def top_p_probs(logits, p):
    probs = torch.softmax(logits, dim=-1)
    ranked = torch.sort(probs, dim=-1, descending=True).values
    above = ranked.cumsum(dim=-1) - ranked
    n_keep = (above < p).sum(dim=-1, keepdim=True)
    smallest = ranked.gather(-1, n_keep - 1)
    kept = torch.where(probs >= smallest, probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)
'''


WRONG_ANSWERS += [
    {"why": "top_p_probs zeroes the tokens outside the nucleus but does not renormalise",
     "replace": {"top_p_probs": _edit(TOP_P, "return kept / kept.sum(dim=-1, keepdim=True)", "return kept")},
     "says": "Divide by the kept mass",
     "loses": ["test_top_p_probs_renormalised"]},
    {"why": "top_p_probs stops before the token that crosses p (cumsum <= p, keeping at least one)",
     "replace": {"top_p_probs": _edit(TOP_P, "n_keep = (above < p).sum(dim=-1, keepdim=True)",
                                      "n_keep = (ranked.cumsum(dim=-1) <= p).sum(dim=-1, keepdim=True).clamp(min=1)")},
     "says": "including the one that crosses p",
     "loses": ["test_top_p_probs"]},
    {"why": "top_p_probs sorts ascending: the nucleus is built from the least likely tokens",
     "replace": {"top_p_probs": '''
def top_p_probs(logits, p):
    probs = torch.softmax(logits, dim=-1)
    ranked, order = torch.sort(probs, dim=-1)                 # ascending
    inside = ranked.cumsum(dim=-1) - ranked < p
    kept = probs * torch.zeros_like(inside).scatter(-1, order, inside)
    return kept / kept.sum(dim=-1, keepdim=True)
'''},
     "says": "Take the most likely tokens",
     "loses": ["test_top_p_probs"]},
    {"why": "shortcut: transformers' TopPLogitsWarper",
     "replace": {"top_p_probs": '''
def top_p_probs(logits, p):
    from transformers.generation.logits_process import TopPLogitsWarper
    flat = logits.reshape(-1, logits.shape[-1])
    return torch.softmax(TopPLogitsWarper(p)(None, flat), dim=-1).reshape(logits.shape)
'''},
     "says": "calls transformers.generation.logits_process.TopPLogitsWarper",
     "loses": ["test_top_p_probs", "test_top_p_probs_renormalised"]},
]


TRAIN_STEP = '''
def train_step(model, optimizer, x, y, lr, loss_fn, max_norm=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = loss_fn(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()
'''
WRONG_ANSWERS += [
    {"why": "train_step never clears .grad: each step adds the earlier batches' gradients",
     "replace": {"train_step": _edit(TRAIN_STEP, "    optimizer.zero_grad(set_to_none=True)\n", "")},
     "says": "That adds the previous step's gradient", "loses": ["test_train_step_update"]},
    {"why": "train_step clips before backward (nothing to clip yet)",
     "replace": {"train_step": _edit(TRAIN_STEP, "    loss.backward()\n    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)\n",
                                     "    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)\n    loss.backward()\n")},
     "says": "Clip the gradient after it is computed", "loses": ["test_train_step_update"]},
    {"why": "train_step never sets the learning rate (the optimizer's own rate)",
     "replace": {"train_step": _edit(TRAIN_STEP, '    for group in optimizer.param_groups:\n        group["lr"] = lr\n', "")},
     "says": "That is the optimizer's own rate", "loses": ["test_train_step_update"]},
    {"why": "train_step returns the loss tensor",
     "replace": {"train_step": _edit(TRAIN_STEP, "return loss.item()", "return loss")},
     "says": "expected the loss as a Python float", "loses": ["test_train_step_loss"]},
    {"why": "train_step returns the loss after the update",
     "replace": {"train_step": _edit(TRAIN_STEP, "return loss.item()", "return loss_fn(model(x), y).item()")},
     "says": "That is the loss after the update", "loses": ["test_train_step_loss"]},
]
