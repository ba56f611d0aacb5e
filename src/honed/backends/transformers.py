"""An in-process Hugging Face model (transformers, optionally with a PEFT adapter): the backend that evaluates
what `honed tune` trains, before it is merged and exported.

`model` is an HF checkpoint folder, a .gguf file or a model alias. A GGUF is loaded dequantized, from the
checkpoint folder `honed.backends.checkpoint` keeps of it (transformers' GGUF loader once, safetensors after): the
same tokens as llama.cpp and, on SmolLM2, the same greedy answers (llama.cpp computes with quantized weights, so
on other models an answer may differ where two tokens are nearly tied). Its identity stays the GGUF's sha256.
The prompt is rendered by honed's one prompt builder with the tokenizer's chat format
(`honed.task.chat.from_tokenizer`), exactly as `LlamaCppBackend` renders it from the GGUF.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from honed.backends.base import Backend
from honed.backends.checkpoint import dequantized_checkpoint
from honed.backends.models import file_sha256, resolve_gguf
from honed.errors import MissingDependency, ModelNotFound
from honed.task.chat import ChatFormat, from_tokenizer
from honed.types import Constraint, ModelInfo, Request, Response, Sampling

# Tokens that end a turn in the common chat formats; llama.cpp treats them as end-of-generation too.
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "<|end_of_text|>")
_WEIGHTS = ("*.safetensors", "*.bin")
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def _locate(model: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a checkpoint folder, a .gguf path or an alias."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelNotFound(f"{p} is not a Hugging Face checkpoint (no config.json)")
        return p.resolve(), None
    gguf = resolve_gguf(model)
    return gguf.parent, gguf.name


def checkpoint_sha256(folder: Path, adapter: Path | None = None) -> str:
    """sha256 over a checkpoint's weight files (sorted by name; each as `name:sha256`), then the adapter's."""
    digest = hashlib.sha256()
    weights = sorted({f for pattern in _WEIGHTS for f in folder.glob(pattern)})
    for f in weights:
        digest.update(f"{f.name}:{file_sha256(f)}\n".encode())
    if adapter is not None:
        digest.update(f"adapter:{adapter_sha256(adapter)}\n".encode())
    return digest.hexdigest()


def adapter_sha256(adapter: Path) -> str:
    """sha256 over a PEFT adapter's config and weights (`name:sha256` lines, in a fixed order)."""
    digest = hashlib.sha256()
    for name in _ADAPTER_FILES:
        if (adapter / name).exists():
            digest.update(f"{name}:{file_sha256(adapter / name)}\n".encode())
    return digest.hexdigest()


class TransformersBackend(Backend):
    """A transformers model in this process; greedy when temperature is 0, else sampled with `sampling.seed`.

    `info.sha256`: for a GGUF, the file's sha256 (as `LlamaCppBackend` reports it); for a checkpoint folder,
    `checkpoint_sha256` over its sorted weight files. With an adapter, the sha256 of `base-sha256 + adapter`
    (`adapter_sha256` over adapter_config.json and the adapter weights), so a tuned model never shares an
    identity with its base. The response cache key adds the backend name (see `cache_identity`).
    """

    name = "transformers"
    streams = True
    in_process = True
    supports_choice = True
    supports_schema = True
    max_batch = 16

    def __init__(self, model: str, *, adapter: str | None = None, device: str = "auto",
                 dtype: str = "auto") -> None:
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise MissingDependency(exc.name or "transformers", extra="train",
                                    why="the transformers backend") from None
        folder, gguf = _locate(model)
        adapter_dir = Path(adapter).expanduser().resolve() if adapter else None
        if adapter_dir is not None and not (adapter_dir / "adapter_config.json").exists():
            raise ModelNotFound(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
        self._torch = torch
        self.device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        # float32 on CPU (bf16 matmuls there are slow and less exact); the checkpoint's own dtype on a GPU.
        torch_dtype: Any = getattr(torch, dtype) if dtype != "auto" else (
            torch.float32 if self.device == "cpu" else "auto")
        weights = dequantized_checkpoint(folder / gguf) if gguf else folder
        self._tok = transformers.AutoTokenizer.from_pretrained(weights, local_files_only=True)
        net = transformers.AutoModelForCausalLM.from_pretrained(weights, dtype=torch_dtype, local_files_only=True)
        if adapter_dir is not None:
            try:
                from peft import PeftModel
            except ImportError:
                raise MissingDependency("peft", extra="train", why="loading an adapter") from None
            # merged into the weights: the model export merges and converts, answering ~1.5x faster than
            # PEFT's per-layer side path (an extraction val pass: 84 s of forward, 32 s of it in LoRA layers)
            net = PeftModel.from_pretrained(net, str(adapter_dir)).merge_and_unload()
        self._net = net.to(self.device).eval()
        self.chat_format: ChatFormat = from_tokenizer(self._tok)
        self._eos_ids = self._end_ids()
        self._pad_id = self._tok.pad_token_id if self._tok.pad_token_id is not None else self._eos_ids[0]
        self._lock = threading.Lock()
        base_sha = file_sha256(folder / gguf) if gguf else checkpoint_sha256(folder)
        sha = base_sha if adapter_dir is None else hashlib.sha256(
            f"{base_sha}+adapter:{adapter_sha256(adapter_dir)}".encode()).hexdigest()
        self.info = ModelInfo(
            name=model, backend=self.name, path=str(folder / gguf) if gguf else str(folder), sha256=sha,
            chat_template=self.chat_format.is_chat,
            details={"source": "gguf" if gguf else "checkpoint", "base_sha256": base_sha,
                     "adapter": str(adapter_dir) if adapter_dir else None, "device": self.device,
                     "dtype": str(next(self._net.parameters()).dtype).removeprefix("torch."),
                     "architecture": getattr(net.config, "model_type", None),
                     "prompt_format": self.chat_format.prompt_format},
        )

    def _end_ids(self) -> list[int]:
        ids = set()
        cfg = getattr(self._net, "generation_config", None)
        eos = getattr(cfg, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tok.eos_token_id is not None:
            ids.add(self._tok.eos_token_id)
        added = self._tok.get_added_vocab()
        ids.update(added[t] for t in _END_OF_TURN if t in added)
        return sorted(ids)

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (the gate scores reference answers with it, end-of-turn token included)."""
        return self._tok

    def cache_identity(self) -> str:
        # Same file as LlamaCppBackend, different numerics and timings: never share cached responses.
        return f"{self.name}:{self.info.sha256}"

    def render(self, request: Request) -> str:
        """The exact prompt text for a request (the same as LlamaCppBackend renders for the same GGUF)."""
        return self.chat_format.render(request.messages)

    def tokenize(self, prompt: str) -> list[int]:
        """Prompt text → token ids; BOS only where the model wants one and the rendered text does not carry it."""
        return self.chat_format.tokenize(prompt)

    def logits(self, token_ids: Sequence[int]) -> Any:
        """The model's next-token logits after every position of `token_ids`: a float tensor [len, vocab]."""
        torch = self._torch
        with self._lock, torch.inference_mode():
            out = self._net(input_ids=torch.tensor([list(token_ids)], device=self.device))
        return out.logits[0].float().cpu()

    def _config(self, s: Sampling, stop: list[str]) -> Any:
        import transformers

        sample = s.temperature > 0
        return transformers.GenerationConfig(
            max_new_tokens=s.max_tokens, do_sample=sample, temperature=s.temperature if sample else None,
            top_p=s.top_p if sample else None, top_k=0 if sample else None, repetition_penalty=1.0,
            eos_token_id=self._eos_ids, pad_token_id=self._pad_id, stop_strings=stop or None)

    def _rule(self, constraint: Constraint | None) -> Any:
        """What keeps a row in the answer space: a choice's token paths, or a JSON-schema token enforcer."""
        if constraint is None:
            return None
        if constraint.kind == "choice":
            return tuple(tuple(self._tok.encode(c, add_special_tokens=False)) for c in constraint.choices)
        return schema_rule(self._tok, self._eos_ids, constraint.schema or {})

    def _batch(self, requests: Sequence[Request]) -> list[Response]:
        """Answer requests that share their sampling settings in one `generate` call (left-padded rows)."""
        torch = self._torch
        prompts = [self.render(r) for r in requests]
        ids = [self.tokenize(p) for p in prompts]
        s = requests[0].sampling
        stop = list(s.stop) + list(self.chat_format.stops)
        choices = [self._rule(r.constraint) for r in requests]
        clock = _FirstTokenClock()
        t0 = clock.t0 = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s.seed)
                rows = decode_batch(self._net, ids, self._config(s, stop), pad_id=self._pad_id,
                                    end_ids=self._eos_ids, choices=choices, streamer=clock,
                                    tokenizer=self._tok if stop else None)
        except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than the model's positions
            return [Response(text="", finish_reason="error", prompt_tokens=len(i), latency_s=time.perf_counter() - t0,
                             error=str(exc), prompt_text=p) for i, p in zip(ids, prompts, strict=True)]
        latency = time.perf_counter() - t0
        answers = []
        for (new, ended), prompt, prompt_ids in zip(rows, prompts, ids, strict=True):
            text = self._tok.decode(new[:-1] if ended else new, skip_special_tokens=True)
            cut = min((i for i in (text.find(x) for x in stop) if i >= 0), default=-1)
            if cut >= 0:
                text = text[:cut]
            finish = "stop" if ended or cut >= 0 or len(new) < s.max_tokens else "length"
            answers.append(Response(text=text, finish_reason=finish, prompt_tokens=len(prompt_ids),
                                    completion_tokens=len(new), ttft_s=clock.ttft_s, latency_s=latency,
                                    prompt_text=prompt))
        return answers

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """Greedy requests with the same settings are answered `max_batch` at a time, in one left-padded batch
        (each response's latency is its batch's); sampled ones one at a time, so each keeps its seeded stream.
        """
        answers: dict[int, Response] = {}
        with self._lock:  # one model, one generate call at a time (and the seeded RNG stays ours)
            groups: dict[Sampling, list[int]] = {}
            for k, r in enumerate(requests):
                if r.sampling.temperature > 0:
                    answers[k] = self._batch([r])[0]
                else:
                    groups.setdefault(r.sampling, []).append(k)
            for members in groups.values():
                # similar lengths share a batch (less padding); the prompt is rendered once, in _batch
                members.sort(key=lambda k: sum(len(m.content) for m in requests[k].messages))
                for i in range(0, len(members), self.max_batch):
                    part = members[i:i + self.max_batch]
                    for k, resp in zip(part, self._batch([requests[k] for k in part]), strict=True):
                        answers[k] = resp
        return [answers[k] for k in range(len(requests))]

    def close(self) -> None:
        self._net = None  # type: ignore[assignment]


class _FirstTokenClock:
    """A transformers streamer that only notes when the first generated token arrives.

    `generate` calls `put` once with the prompt, then once per new token: the second call is the first token.
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.ttft_s: float | None = None
        self._calls = 0

    def put(self, value: Any) -> None:
        self._calls += 1
        if self._calls == 2:
            self.ttft_s = time.perf_counter() - self.t0

    def end(self) -> None:
        pass


def token_table(tokenizer: Any, end_ids: Sequence[int]) -> Any:
    """lm-format-enforcer's table of a tokenizer (built once per model: a few seconds), ending on `end_ids`.

    The table its transformers integration builds (that module imports a name transformers 5 no longer has):
    each regular token's text, decoded after a "0" so that a word-start token keeps its leading space.
    """
    try:
        from lmformatenforcer import TokenEnforcerTokenizerData
    except ImportError:
        raise MissingDependency("lm-format-enforcer", extra="train", why="JSON-schema constrained decoding") from None
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for idx in range(len(tokenizer)):
        if idx in special:
            continue
        after_zero = tokenizer.decode([zero, idx])[1:]
        regular.append((idx, after_zero, len(after_zero) > len(tokenizer.decode([idx]))))
    # bitmask tables: the allowed tokens come back as packed int32 words that `_AnswerSpace` expands with tensor
    # ops; the id lists of the list mode cost ~3x more per generated token to turn into a mask (extraction, 16
    # rows: 40 vs 100 ms per step, most of a validation pass's time outside the model)
    return TokenEnforcerTokenizerData(regular, lambda ids: tokenizer.decode(ids).rstrip("\ufffd"), list(end_ids),
                                      True, len(tokenizer))


def schema_enforcer(table: Any, schema: dict[str, Any]) -> Any:
    """The tokens that keep an output a prefix of a JSON document valid under `schema`, then only an end-of-turn
    token (lm-format-enforcer; `table` from `token_table`)."""
    from lmformatenforcer import JsonSchemaParser, TokenEnforcer

    return TokenEnforcer(table, JsonSchemaParser(schema))


_SCHEMA_RULES: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], tuple[Any, dict[str, Any]]]] = \
    weakref.WeakKeyDictionary()


def schema_rule(tokenizer: Any, end_ids: Sequence[int], schema: dict[str, Any]) -> Any:
    """`schema`'s token enforcer for `tokenizer`, ending on `end_ids`: the one cache of them. The tokenizer's table
    (seconds) and each schema's enforcer are built once per tokenizer, and shared by the transformers backend and
    training's validation passes; they go when the tokenizer goes."""
    per_end = _SCHEMA_RULES.setdefault(tokenizer, {})
    ends = tuple(end_ids)
    if ends not in per_end:
        per_end[ends] = (token_table(tokenizer, ends), {})
    table, enforcers = per_end[ends]
    key = json.dumps(schema, sort_keys=True)
    if key not in enforcers:
        enforcers[key] = schema_enforcer(table, schema)
    return enforcers[key]


def decode_batch(net: Any, prompts: Sequence[Sequence[int]], config: Any, *, pad_id: int, end_ids: Sequence[int],
                 choices: Sequence[Any] | None = None, streamer: Any = None,
                 tokenizer: Any = None) -> list[tuple[list[int], bool]]:
    """Generate for token-id prompts in one left-padded batch: per row, (new token ids up to and including the
    end-of-turn token, whether it ended there). `choices[b]` keeps row b in its answer space: its choices' token
    paths, or a JSON-schema token enforcer (`schema_enforcer`); None decodes freely.
    The one batched decoder: the transformers backend and training's validation passes both call it."""
    import torch
    import transformers

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[b, width - len(p):] = 1
    processors = None
    if choices is not None and any(c is not None for c in choices):
        processors = transformers.LogitsProcessorList([_AnswerSpace(list(choices), list(end_ids), width)])
    device = next(net.parameters()).device
    with torch.inference_mode():
        out = net.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                           streamer=streamer, logits_processor=processors, tokenizer=tokenizer)
    rows = []
    for row in out[:, width:].tolist():
        end = next((k for k, t in enumerate(row) if t in end_ids), None)
        if end is not None:
            rows.append((row[:end + 1], True))
            continue
        while row and row[-1] == pad_id:  # a row stopped by a stop string is padded after its last token
            row = row[:-1]
        rows.append((row, False))
    return rows


class _AnswerSpace:
    """A logits processor that keeps each row of a batch in its answer space, then ends it.

    A row's choices are token sequences (each choice as the tokenizer spells it alone); after a whole choice only
    an end-of-turn token may follow: the same answer space as llama.cpp's choice grammar, which accepts exactly
    one of the strings. A row with a JSON-schema token enforcer gets the tokens it allows (as llama.cpp's
    schema grammar, up to the two libraries' reading of the schema). A row without either decodes freely.
    """

    def __init__(self, choices: list[Any], end_ids: list[int], prompt_len: int) -> None:
        self.choices = choices
        self.end_ids = end_ids
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        done = input_ids[:, self.prompt_len:].tolist()
        width = scores.shape[-1]
        for b, options in enumerate(self.choices):
            if options is None:
                continue
            prefix = tuple(done[b])
            allow = torch.zeros(width, dtype=torch.bool, device=scores.device)
            if not isinstance(options, tuple) and not any(t in self.end_ids for t in prefix):  # a schema enforcer
                words = options.get_allowed_tokens(list(prefix)).allowed_tokens  # packed bits: `token_table`
                bits = (words.unsqueeze(-1) >> torch.arange(32, dtype=words.dtype)) & 1
                allow[:] = bits.flatten()[:width].to(device=scores.device, dtype=torch.bool)
            elif not isinstance(options, tuple):  # the JSON document is complete: only the end may follow
                allow[self.end_ids] = True
            else:
                n = len(prefix)
                ids = {o[n] for o in options if len(o) > n and o[:n] == prefix and o[n] < width}
                if not ids or prefix in options:
                    ids.update(self.end_ids)
                allow[list(ids)] = True
            if not allow.any():
                allow[self.end_ids] = True  # a dead end ends the answer
            scores[b] = scores[b].masked_fill(~allow, float("-inf"))
        return scores
