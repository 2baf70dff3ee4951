"""The demo judge: a LoRA adapter that teaches SmolLM2-135M-Instruct to give the verdict the better reply earns.

SmolLM2 as it comes answers ``[[A]]`` for every pair (it reads the position, not the replies), so the demo ships an
adapter trained by this module on ``data/judge_replies.jsonl`` (verdict pairs built by :mod:`evalsuite.demo.verdicts`,
every pair in both orders). Each example is rendered exactly as the ``hf`` backend renders a judge call in logprob
mode: the demo's template (``data/judge.j2``) through the model's chat template, then the verdict prefix ``[[``;
the loss is the cross-entropy of the verdict over the three verdict tokens at that position, the same renormalised
probabilities the backend reads. LoRA sits on every linear layer of the top layers only, so the backward pass stops
there and a CPU trains it in minutes. The two orders of a pair share a batch.

Rebuild the shipped adapter (``replies`` rewrites the replies file with the model's own greedy replies added beside the
written ones; the shipped file has the written ones only)::

    python -m evalsuite.demo.judge_adapter replies --model "$(python -c 'from evalsuite.models import resolve_model_path as r; print(r("smollm2"))')"
    python -m evalsuite.demo.judge_adapter train --model ... --out evalsuite/demo/data/judge-adapter

torch, transformers and peft load inside the functions.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from evalsuite._resources import demo_data_dir
from evalsuite.demo.verdicts import VerdictExample, read_prompt_replies, split_items, verdict_examples

if TYPE_CHECKING:
    from evalsuite.config import ModelSpec

TEMPLATE_FILE = "judge.j2"
REPLIES_FILE = "judge_replies.jsonl"
ADAPTER_DIR = "judge-adapter"
REPLY_TOKENS = 48  # the demo's answer length: the judge is trained on replies as long as the ones it will read
CHOICES = ("A", "B", "C")
PREFIX = "[["


@dataclass(frozen=True)
class JudgeTraining:
    """How the shipped adapter was trained (written beside it as ``training.json``)."""

    rank: int = 16
    top_layers: int = 6
    lr: float = 3e-3
    epochs: int = 4
    batch_size: int = 8
    decisive_per_prompt: int = 4  # four broken partners per good reply: each failure kind is seen often enough
    tie_every: int = 4
    seed: int = 0


def template_path() -> Path:
    return Path(str(demo_data_dir() / TEMPLATE_FILE))


def adapter_path() -> Path:
    return Path(str(demo_data_dir() / ADAPTER_DIR))


def render_prompt(tokenizer: Any, example: VerdictExample) -> list[int]:
    """Token ids of the judge call for ``example``, as the ``hf`` backend builds them in logprob mode."""
    from evalsuite.judge.templates import load_template

    template = load_template(str(template_path()))
    messages = template.render({
        "question_1": example.question, "answer_a_1": example.answer_a, "answer_b_1": example.answer_b,
        "question_2": "", "answer_a_2": "", "answer_b_2": "", "ref_answer_1": "", "ref_answer_2": "",
    })
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True) + PREFIX
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _choice_ids(tokenizer: Any) -> list[int]:
    from evalsuite.backends._vllm_worker import choice_token_ids

    return choice_token_ids(lambda t: tokenizer.encode(t, add_special_tokens=False), PREFIX, CHOICES)


def _batch(rows: Sequence[list[int]], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def write_prompt_replies(model: str, out: Path, *, prefs: Path | None = None, batch_size: int = 16) -> int:
    """For every prompt of the bundled preference data: its written (chosen) reply and the model's own greedy reply
    of up to REPLY_TOKENS tokens, through the ``hf`` backend. Returns the number of prompts written."""
    from evalsuite.backends._base import ChatRequest, ChatResult, NullProgress
    from evalsuite.backends.hf import HFBackend
    from evalsuite.config import ModelSpec

    rows = [json.loads(line) for line in (prefs or Path(str(demo_data_dir() / "prefs.jsonl"))).read_text().splitlines() if line.strip()]
    backend = HFBackend.from_spec(ModelSpec(name="smollm2", backend="hf", model=model, batch_size=batch_size))
    replies: dict[str, str] = {}

    def done(request: ChatRequest, result: ChatResult) -> None:
        replies[request.key] = result.text.strip()

    requests = [ChatRequest(key=str(i), messages=({"role": "user", "content": r["prompt"]},), temperature=0.0,
                            max_tokens=REPLY_TOKENS, seed=0) for i, r in enumerate(rows)]
    backend.run(requests, done, NullProgress())
    lines = []
    for i, row in enumerate(rows):
        own = replies.get(str(i), "")
        lines.append(json.dumps({"prompt": row["prompt"], "replies": [row["chosen"]] + ([own] if own else [])}))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def verdict_probs(model: Any, tokenizer: Any, examples: Sequence[VerdictExample], *, batch_size: int = 8) -> list[list[float]]:
    """P(A), P(B), P(C) renormalised over the three verdict tokens, per example (what logprob mode reads)."""
    import torch

    ids_of = _choice_ids(tokenizer)
    rows = [render_prompt(tokenizer, e) for e in examples]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out: list[list[float]] = [[] for _ in rows]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            ids, mask, pos = _batch([rows[i] for i in chunk], tokenizer.pad_token_id)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1, ids_of]
            for i, p in zip(chunk, torch.softmax(logits.float(), -1).tolist()):
                out[i] = p
    return out


def train_judge_adapter(model: str, out: Path, *, replies: Path | None = None, options: JudgeTraining = JudgeTraining(),
                        say: Any = print) -> dict[str, Any]:
    """Train the judge adapter on the training split, save it to ``out``, and return its held-apart figures."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(options.seed)
    items = read_prompt_replies(replies or Path(str(demo_data_dir() / REPLIES_FILE)))
    train = verdict_examples(split_items(items, "train"), decisive_per_prompt=options.decisive_per_prompt,
                             tie_every=options.tie_every, seed=options.seed)
    held = held_apart_examples(16, seed=options.seed, replies=replies)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.padding_side = "left"
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    layers = base.config.num_hidden_layers
    config = LoraConfig(r=options.rank, lora_alpha=2 * options.rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                        layers_to_transform=list(range(layers - options.top_layers, layers)))
    peft_model = get_peft_model(base, config)
    ids_of = _choice_ids(tokenizer)
    target = {c: i for i, c in enumerate(CHOICES)}
    rows = [(render_prompt(tokenizer, e), target[e.verdict]) for e in train]
    # the two orders of a pair stay in one batch: what position would earn in one order it loses in the other
    pairs = [rows[i:i + 2] for i in range(0, len(rows), 2)]
    rng = random.Random(options.seed)
    pairs.sort(key=lambda pair: len(pair[0][0]))  # batches of like length: little padding; their order is shuffled
    flat = [row for pair in pairs for row in pair]
    chunks = [flat[i:i + options.batch_size] for i in range(0, len(flat), options.batch_size)]
    inner = base.model  # the decoder stack (PEFT wraps its linear layers in place)
    frozen = layers - options.top_layers
    # The layers below the adapter never change: run them once per batch and keep their output, so every epoch
    # runs (and back-propagates through) the top layers only.
    cached = []
    with torch.no_grad():
        for chunk in chunks:
            ids, mask, pos = _batch([r for r, _ in chunk], tokenizer.pad_token_id)
            hidden = _run_layers(inner, inner.embed_tokens(ids), mask, pos, 0, frozen)
            cached.append((hidden, mask, pos, torch.tensor([t for _, t in chunk])))
        check_ids, check_mask, check_pos = _batch([r for r, _ in chunks[0]], tokenizer.pad_token_id)
        full = peft_model(input_ids=check_ids, attention_mask=check_mask, position_ids=check_pos, logits_to_keep=1).logits[:, -1, ids_of]
        split = _top_logits(peft_model, inner, cached[0][0], check_mask, check_pos, frozen, layers, ids_of)
        assert torch.allclose(full, split, atol=1e-3), "cached lower layers must give the model's own logits"
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
    total = options.epochs * len(cached)
    say(f"judge adapter: {len(train)} training examples ({total} steps), {len(held)} held apart")
    peft_model.train()
    started = time.perf_counter()
    step = 0
    for _ in range(options.epochs):
        for index in rng.sample(range(len(cached)), len(cached)):
            hidden, mask, pos, labels = cached[index]
            step += 1
            for group in optimizer.param_groups:  # linear decay to a tenth: a short run settles instead of oscillating
                group["lr"] = options.lr * (1 - 0.9 * (step - 1) / max(1, total - 1))
            logits = _top_logits(peft_model, inner, hidden, mask, pos, frozen, layers, ids_of)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step % 10 == 0 or step == total:
                say(f"  step {step}/{total} loss {loss.item():.3f} ({time.perf_counter() - started:.0f}s)")
    peft_model.eval()
    figures = held_apart_figures(held, verdict_probs(peft_model, tokenizer, held))
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out))
    config_file = out / "adapter_config.json"
    saved = json.loads(config_file.read_text())
    saved["base_model_name_or_path"] = "SmolLM2-135M-Instruct"  # not this machine's path
    config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    (out / "training.json").write_text(json.dumps({"options": options.__dict__, "train_examples": len(train),
                                                   "held_examples": len(held), "held_apart": figures,
                                                   "seconds": round(time.perf_counter() - started)}, indent=2) + "\n")
    return figures


def _run_layers(inner: Any, hidden: Any, mask: Any, pos: Any, first: int, last: int) -> Any:
    """Decoder layers ``first`` to ``last - 1`` of ``inner`` (a transformers decoder stack) over ``hidden``."""
    from transformers.masking_utils import create_causal_mask

    causal = create_causal_mask(config=inner.config, inputs_embeds=hidden, attention_mask=mask, cache=None,
                                position_ids=pos)
    rotary = inner.rotary_emb(hidden, position_ids=pos)
    for layer in inner.layers[first:last]:
        hidden = layer(hidden, attention_mask=causal, position_embeddings=rotary, position_ids=pos)
    return hidden


def _top_logits(model: Any, inner: Any, hidden: Any, mask: Any, pos: Any, first: int, layers: int, ids_of: list[int]) -> Any:
    """The verdict logits at the last position, from the cached output of the frozen layers."""
    hidden = inner.norm(_run_layers(inner, hidden, mask, pos, first, layers)[:, -1:, :])
    return model.get_output_embeddings()(hidden)[:, -1, ids_of]


def held_apart_figures(examples: Sequence[VerdictExample], probs: Sequence[Sequence[float]]) -> dict[str, float]:
    """Accuracy of the top verdict, and position consistency over the two orders of each pair (examples come in
    order pairs, as :func:`verdict_examples` makes them)."""
    top = ["ABC"[max(range(3), key=lambda k: p[k])] for p in probs]
    correct = sum(t == e.verdict for t, e in zip(top, examples))
    flipped = {"A": "B", "B": "A", "C": "C"}
    pairs = len(examples) // 2
    consistent = sum(flipped[top[2 * i]] == top[2 * i + 1] for i in range(pairs))
    decisive = [t for t in top if t != "C"]
    return {"examples": len(examples), "accuracy": correct / max(1, len(examples)),
            "position_consistency": consistent / max(1, pairs),
            "first_share": (decisive.count("A") / len(decisive)) if decisive else 0.5}


@dataclass(frozen=True)
class JudgeCheck:
    """The judge measured on held-apart verdict pairs (prompts its adapter never saw), both orders of each."""

    pairs: int
    accuracy: float  # share of calls whose top verdict is the right one (the better reply, or C for a tie)
    consistency: float  # share of pairs whose two orders agree
    first_share: float  # share of decisive verdicts that went to the first position


def held_apart_examples(pairs: int, *, seed: int = 0, replies: Path | None = None) -> list[VerdictExample]:
    """``pairs`` held-apart pairs (both orders each): one plainly-better pair per held-apart prompt, failures in
    rotation, with a tie pair every fourth prompt."""
    items = split_items(read_prompt_replies(replies or Path(str(demo_data_dir() / REPLIES_FILE))), "held")
    return verdict_examples(items, decisive_per_prompt=1, tie_every=4, seed=seed + 1)[: 2 * pairs]


def check_judge(judge: "ModelSpec", *, pairs: int = 16, seed: int = 0) -> JudgeCheck:
    """Ask ``judge`` (through its backend, in logprob mode, as the demo's comparisons ask it) about held-apart pairs."""
    from evalsuite.backends import ChatRequest, ChatResult, make_backend
    from evalsuite.backends._base import NullProgress
    from evalsuite.judge.templates import load_template
    from evalsuite.judge.verdict import get_verdict_format

    template = load_template(str(template_path()))
    choices = get_verdict_format(template.verdict_format).logprob_choices
    examples = held_apart_examples(pairs, seed=seed)
    requests = [
        ChatRequest(key=str(i), temperature=0.0, max_tokens=judge.max_tokens, seed=judge.seed, logprob_choices=choices,
                    messages=template.render({"question_1": e.question, "answer_a_1": e.answer_a, "answer_b_1": e.answer_b,
                                              "question_2": "", "answer_a_2": "", "answer_b_2": "", "ref_answer_1": "",
                                              "ref_answer_2": ""}))
        for i, e in enumerate(examples)
    ]
    probs: dict[int, list[float]] = {}

    def done(request: ChatRequest, result: ChatResult) -> None:
        got = result.choice_probs or {}
        probs[int(request.key)] = [float(got.get(c, 0.0)) for c in CHOICES]

    backend = make_backend(judge)
    try:
        backend.run(requests, done, NullProgress())
    finally:
        backend.close()
    figures = held_apart_figures(examples, [probs[i] for i in range(len(examples))])
    return JudgeCheck(pairs=len(examples) // 2, accuracy=figures["accuracy"],
                      consistency=figures["position_consistency"], first_share=figures["first_share"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalsuite.demo.judge_adapter", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("replies", help="write data/judge_replies.jsonl (written + the model's own replies)")
    rep.add_argument("--model", required=True)
    rep.add_argument("--out", default=str(demo_data_dir() / REPLIES_FILE))
    tr = sub.add_parser("train", help="train the judge adapter and print its held-apart figures")
    tr.add_argument("--model", required=True)
    tr.add_argument("--out", default=str(adapter_path()))
    tr.add_argument("--replies", default=None)
    args = parser.parse_args(argv)
    if args.command == "replies":
        print(f"wrote {write_prompt_replies(args.model, Path(args.out))} prompts to {args.out}")
    else:
        figures = train_judge_adapter(args.model, Path(args.out), replies=Path(args.replies) if args.replies else None)
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
