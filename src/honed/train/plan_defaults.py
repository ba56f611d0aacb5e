"""Filling the knobs a user left unset, each with its reason, and refusing configs that are doomed.

The numbers encode what the seeds and our own CPU runs measured: SmolLM2-135M on 64 examples collapsed after 1
epoch at TRL's default LR and learned at 8 epochs × 5e-4 (DESIGN.md); r=16 on all 7 projections of a 3B model
with 542 examples said NONE to everything (seed 000); r=32 in bf16 on a 4B model with 63 examples worked (seed
001). The planner proposes; the validation metric and early stopping decide.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from honed.errors import UserError
from honed.task.chat import ChatFormat
from honed.task.data import Item
from honed.task.spec import Task
from honed.train.arch import ATTENTION_MODULES, LORA_MODULES
from honed.train.config import TuneConfig
from honed.train.dataset import encode

SHORT_ANSWER = 8
"""Answers this short (median completion tokens, terminator included: a label, a choice) are learned in the upper
half of the layers on a CPU; longer ones (a JSON record) get every layer. Measured at both ends: 3 tokens on the
demo task, 103 on examples/extract (see the top_layers reasons); between them capacity comes first."""


def _present(model: Any, names: list[str]) -> list[str]:
    found = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    return [n for n in names if n in found]


def lora_params(model: Any, targets: list[str], rank: int) -> int:
    """Trainable LoRA parameters: r × (in + out) per adapted linear layer."""
    total = 0
    for name, mod in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and hasattr(mod, "in_features"):
            total += rank * (mod.in_features + mod.out_features)
    return total


def plan_swaps(task: Task, config: TuneConfig, n: int) -> tuple[int, str]:
    """(entity swaps per training example, why): copies only where the task names its entities and data is short."""
    from honed.data.augment import swappable

    if config.entity_swaps is not None:
        return config.entity_swaps, "set by you"
    if not swappable(task):
        return 0, "none: only an extraction task that names its entities ([extract] entities_key) can swap them"
    if n >= SWAP_UNTIL:
        return 0, f"none: {n} examples are enough variety of names"
    copies = min(4, math.ceil(SWAP_UNTIL / n) - 1)
    return copies, (f"{copies} swapped copies of each of the {n} examples (their entity names replaced by other "
                    "training names of the same kind): with few sentences a small model ties relations to names, "
                    f"not to the sentence; {SWAP_MEASURED}")


SWAP_UNTIL = 400
SWAP_MEASURED = ("measured on examples/extract (80 sentences, SmolLM2-135M, 30 minutes): relationship F1 0.32 → 0.37 "
                 "and entity F1 0.90 → 0.96 on the locked test (101 vs 112 steps; the second run's checkpoint "
                 "chosen by record F1)")


def plan_top_layers(n_layers: int, on_gpu: bool, answer_median: float, configured: int | None = None
                    ) -> tuple[int | None, str]:
    """(the upper layers LoRA adapts, None for every layer; why)."""
    if configured:
        top = min(configured, n_layers) or None
        why = "set by you" + ("" if top != n_layers else " (every layer)")
    elif not on_gpu and n_layers >= 8 and answer_median <= SHORT_ANSWER:
        top = n_layers // 2
        why = (
            f"{top} of {n_layers}: answers of a few tokens (median {answer_median:g}), and on a CPU the backward "
            "pass is most of a step; it stops below the lowest adapted layer (measured on the demo task, "
            "SmolLM2-135M, 8-minute budget: the upper half trained 99 steps at 134 tokens/s for test macro-F1 "
            f"0.871, every layer 83 steps at 85 tokens/s for 0.769); set top_layers = {n_layers} to adapt every "
            "layer")
    elif not on_gpu and n_layers >= 8:
        top = None
        why = (
            f"every layer: answers of {answer_median:g} tokens (median) are more than a label for the top layers "
            "to pick (measured on examples/extract, SmolLM2-135M, 30-minute budget: val record F1 0.92 at step 77 "
            "with every layer, 0.76 at best with the upper half, whose steps were twice as fast)")
    else:
        top = None
        why = "every layer (on a GPU the backward pass is cheap; capacity comes first)"
    return top, why


# --- the rules: pure functions of the data and the model's size, shared by `honed tune` and `honed plan` ---------

def choose_max_length(prompt_p95: int, longest_completion: int) -> tuple[int, str]:
    """(max_length, why): room for the longest answer after a 95th-percentile prompt, a multiple of 64."""
    value = int(math.ceil((prompt_p95 + longest_completion + 8) / 64) * 64)
    return value, (f"{value}: the 95th-percentile prompt ({prompt_p95} tokens) plus the longest completion "
                   f"({longest_completion}); completions are never cut, longer prompts are middle-truncated")


def choose_targets(n_params: int, n: int) -> tuple[list[str], str]:
    """(projection names LoRA adapts, why); the caller keeps those the model has."""
    if n_params < 1.5e9:
        return list(LORA_MODULES), "all linear projections: a model this small needs the capacity"
    if n >= 1000:
        return list(LORA_MODULES), "all projections: enough data to support them"
    return list(ATTENTION_MODULES), ("attention only: seed 000's r=16 on all 7 modules of a 3B model with 542 examples "
                                  "overwrote the model (NONE to everything)")


LONG_ANSWER = 128
"""Answers this long (median tokens) are formatted text to generate, not a label or a record: they get rank 16."""


def choose_rank(n: int, n_params: int, answer_median: float) -> tuple[int, str]:
    """(LoRA rank, why): capacity follows the amount of data and the size of what is learned."""
    long = answer_median >= LONG_ANSWER
    if n >= 20_000 and long:
        return 32, (f"r=32: {n} examples with long answers (median {answer_median:g} tokens): seed 004 keeps r=32 "
                    "for complex generation with 10k+ diverse examples")
    if n >= 5_000:
        return 16, f"r=16: {n} examples: seed 004's general default for 5k–50k examples"
    if long:
        return 16, (f"r=16: long answers (median {answer_median:g} tokens) need capacity: seed 001 learned long "
                    "formatted answers with r=32 on 63 examples in bf16; r=16 keeps that capacity at half the adapter")
    rank = 8 if n < 300 or n_params >= 1.5e9 else 16
    return rank, (f"r={rank}: {n} examples; small data gets a small rank (seed 000: r=16 with 542 examples "
                  "collapsed a 3B model), a small model in full precision can afford r=16 with more data (seed 001)")


def choose_learning_rate(n_params: int, n: int, *, dpo: bool = False) -> tuple[float, str]:
    """(peak learning rate, why) for LoRA on a model of `n_params` with `n` examples; DPO takes a fifth."""
    if n_params < 3e8:
        lr, why = 1e-3, ("1e-3: a model under 300M with LoRA learns a narrow task in a few epochs only at a high rate "
                         "(measured on the demo task, SmolLM2-135M: at 5e-4 val macro-F1 was 0.40 after 1.4 epochs "
                         "and 0.73 after 1.9, still rising when an 8-minute budget ended); early stopping and the "
                         "collapse alarm watch it")
    elif n_params < 1e9:
        lr, why = 5e-4, ("5e-4: sub-1B models barely move at TRL's default 2e-5/2e-4 (measured: SmolLM2 collapsed "
                         "after 1 epoch at the default, learned at 5e-4)")
    elif n_params >= 2e9 and n < 1000:
        lr, why = 5e-5, (f"5e-5: {n_params / 1e9:.1f}B parameters and only {n} examples: seed 000 collapsed a 3B at "
                         "2e-4 on 542 examples and asked for 5e-5; seed 001's 4B learned at 5e-5 on 63")
    else:
        lr, why = 1e-4, ("1e-4: between seed 001's 5e-5 (4B, r=32) and the usual 2e-4; seed 000's 2e-4 on a 3B "
                         "model collapsed it")
    if dpo:
        lr /= 5
        why = (f"{lr:.0e}: DPO's pairwise signal is sharper than SFT's, so a fifth of the SFT rate for this model "
               "size; the val metric and the collapse alarm watch it")
    return lr, why


def choose_epochs(n: int, share: float = 1.0) -> tuple[float, str]:
    """(epochs at most, why) for `n` examples; `share`: how many times as many rows the swapped copies make."""
    epochs: float = 10 if n < 150 else 4 if n < 500 else 3 if n < 3000 else 2
    why = (f"{epochs} at most for {n} examples: tiny data on a tiny model needs many passes (seed 004's 1–2 epochs "
           "assumes thousands); early stopping on the val metric decides. The learning rate decays over these "
           "epochs, so they also set how soon it anneals: with 200-300 examples the best val passes came at 3.3-3.7 "
           "epochs (the demo task, Banking77-NONE), and a 6-epoch plan on a faster CPU still had 45% of its rate at "
           "3.3 epochs and overfit (train loss 0.007, test macro-F1 0.69 vs 0.85 annealed)")
    if share > 1:
        epochs = round(epochs / share, 2)
        why = f"{epochs} over the examples and their swapped copies ({share:.0f}x as many): the steps of " + why
    return epochs, why


def resolve_settings(task: Task, config: TuneConfig, loaded: Any, train_items: list[Item], fmt: ChatFormat,
                     swapped: list[Item] | None = None) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The planned settings for `train_items`, the task's own examples (their number sets the rank and the passes;
    their warnings are reported), and their `swapped` copies, trained on with them: the epochs are scaled so that
    the steps stay what the task's own examples would get — the copies vary what repeats, they add no steps."""
    model = loaded.model
    n_params = model.num_parameters()
    n = len(train_items)
    share = (n + len(swapped or [])) / max(n, 1)
    reasons: dict[str, str] = {}
    warnings: list[str] = []
    try:
        from honed.data.warnings import data_warnings

        warnings += [w.message for w in data_warnings(task, train_items)]
    except ImportError:
        pass
    train_items = train_items + (swapped or [])

    probe, _ = encode(task, train_items, fmt, max_length=1 << 20)
    prompts = sorted(e.n_prompt for e in probe)
    answer_median = statistics.median(e.n_completion for e in probe)
    longest_completion = max(e.n_completion for e in probe)
    p95 = prompts[min(len(prompts) - 1, math.ceil(0.95 * len(prompts)) - 1)]
    if config.max_length:
        max_length = config.max_length
        reasons["max_length"] = "set by you"
    else:
        max_length, reasons["max_length"] = choose_max_length(p95, longest_completion)
    if longest_completion + 8 > max_length:
        warnings.append(f"the longest completion ({longest_completion} tokens) does not fit max_length "
                        f"{max_length}: such examples will be skipped, not cut")

    if config.target_modules:
        targets = config.target_modules
        reasons["target_modules"] = "set by you"
    else:
        wanted, reasons["target_modules"] = choose_targets(n_params, n)
        targets = _present(model, wanted)
    if config.rank:
        rank = config.rank
        reasons["rank"] = "set by you"
    else:
        rank, reasons["rank"] = choose_rank(n, n_params, answer_median)
    alpha = config.alpha or 2 * rank
    reasons["alpha"] = "set by you" if config.alpha else f"{alpha} = 2 × rank, the common scaling"
    if config.learning_rate:
        lr = config.learning_rate
        reasons["learning_rate"] = "set by you"
    else:
        lr, reasons["learning_rate"] = choose_learning_rate(n_params, n, dpo=config.method == "dpo")
    if config.epochs:
        epochs = config.epochs
        reasons["epochs"] = "set by you (an upper bound: early stopping on the val metric decides)"
    else:
        epochs, reasons["epochs"] = choose_epochs(n, share)

    trainable = lora_params(model, targets, rank)
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    on_gpu = next(model.parameters()).device.type == "cuda"
    top, reasons["top_layers"] = plan_top_layers(n_layers, on_gpu, answer_median, config.top_layers)
    if top and n_layers > top:
        trainable = trainable * top // n_layers  # the same modules, in the top layers only
    train_tokens = sum(e.n_completion for e in probe)
    ratio = trainable / max(train_tokens, 1)
    reasons["budget"] = (f"{trainable:,} trainable LoRA parameters ({trainable / n_params:.2%} of {n_params:,}) for "
                         f"{train_tokens:,} completion tokens ({ratio:,.0f} parameters per learned token)")
    # Two measured points: SmolLM2 r=8 × 7 modules on 64 short answers (~12,700 parameters per learned token)
    # learned the task; seed 000's 3B at r=16 × 7 modules on 542 one-word answers (~50,000) collapsed.
    if ratio > 30_000 and not config.force:
        raise UserError(f"doomed config: {trainable:,} trainable parameters for only {train_tokens:,} completion "
                        f"tokens ({ratio:,.0f} per token) will memorize, not learn (seed 000). Lower --rank, adapt "
                        "fewer modules, add data, or pass --force")
    settings = {"max_length": max_length, "target_modules": targets, "rank": rank, "alpha": alpha,
                "learning_rate": lr, "epochs": epochs, "trainable_params": trainable, "n_params": n_params,
                "top_layers": top if top and top < n_layers else None}
    return settings, reasons, warnings
