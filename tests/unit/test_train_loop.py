"""The pure parts of honed's training loop: packing, the loss positions, the schedule, the time-budget plan."""

from __future__ import annotations

import math

import pytest

from honed.errors import UserError
from honed.train.config import TuneConfig, parse_duration
from honed.train.dataset import Encoded
from honed.train.loop import Plan, lr_factor, pack

pytestmark = pytest.mark.unit


def _enc(ids: list[int], n_prompt: int) -> Encoded:
    return Encoded("x", ids, [0] * n_prompt + [1] * (len(ids) - n_prompt), n_prompt, len(ids) - n_prompt)


def test_pack_concatenates_resets_positions_and_keeps_only_completion_targets() -> None:
    a = _enc([10, 11, 12, 13, 2], 3)  # prompt 10 11 12, completion 13 <eos=2>
    b = _enc([20, 21, 22, 2], 2)  # prompt 20 21, completion 22 <eos>
    p = pack([a, b])
    assert p.input_ids == [10, 11, 12, 13, 2, 20, 21, 22, 2]
    assert p.position_ids == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    # the logit at t predicts token t+1: a's completion tokens sit at 3 and 4, b's at 7 and 8
    assert p.loss_positions == [2, 3, 6, 7]
    assert p.targets == [13, 2, 22, 2]
    assert p.n_tokens == 9
    # never a target across the boundary: position 4 (a's EOS) does not predict b's first token
    assert 4 not in p.loss_positions


def test_linear_schedule_warms_up_then_decays_to_zero() -> None:
    total, warmup = 10, 2
    f = [lr_factor("linear", s, warmup, total) for s in range(total)]
    assert f[0] == pytest.approx(1 / 3) and f[1] == pytest.approx(2 / 3)
    assert f[2] == 1.0
    assert f[-1] == pytest.approx(1 - 7 / 8)
    assert lr_factor("linear", total, warmup, total) == 0.0
    assert lr_factor("cosine", 2 + 4, warmup, total) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor("constant", 0, warmup, total) == 1.0
    with pytest.raises(UserError, match="lr_scheduler 'polynomial'"):
        lr_factor("polynomial", 0, 0, 1)


def test_time_budget_sets_the_steps_from_the_measured_step_time() -> None:
    plan = Plan(total=1000, warmup_ratio=0.1, budget_s=600, eval_every=10)
    # 3 steps done in 30 s at 10 s/step, a validation pass costs 20 s and runs every 10 steps:
    # each further step costs 10 + 2 = 12 s, one pass is kept for the end: (600 - 30 - 20) / 12 = 45 more
    plan.fit_budget(3, 30.0, 10.0, 20.0)
    assert plan.total == 48 and plan.fixed and plan.warmup == 5
    assert "→ 48 steps (cap 1000), a validation pass every 10" in plan.notes[0]
    # refit at step 20 after a validation pass got cheaper (5 s): 20 steps in 250 s, 10.5 s each from now on,
    # (600 - 250 - 5) / 10.5 = 32 more
    plan.fit_budget(20, 250.0, 10.0, 5.0)
    assert plan.total == 52 and plan.cap == 1000
    # a machine that slowed down: never fewer steps than already done
    plan.fit_budget(40, 590.0, 30.0, 5.0)
    assert plan.total == 40
    capped = Plan(total=20, warmup_ratio=0.0, budget_s=600, eval_every=10)
    capped.fit_budget(3, 30.0, 10.0, 20.0)
    assert capped.total == 20  # the epochs / max_steps cap still holds


def test_time_budget_spaces_costly_validation_passes_by_their_measured_cost() -> None:
    # the extraction run: 1200 s, 6 s steps, a 92 s pass; one every 4 steps left 27 steps of learning
    plan = Plan(total=66, warmup_ratio=0.1, budget_s=1200, eval_every=4, auto_eval=True)
    plan.fit_budget(3, 20.0, 6.0, 92.0)
    # 1088 s left: the steps reach their cap of 66 (378 s), the other 710 s buy 7 passes → one every 9 steps
    assert (plan.total, plan.eval_every) == (66, 9)
    assert "a validation pass every 9" in plan.notes[-1]
    # no cap in reach: passes get a quarter of what is left, the steps the rest
    plan = Plan(total=10_000, warmup_ratio=0.1, budget_s=1200, eval_every=4, auto_eval=True)
    plan.fit_budget(3, 20.0, 6.0, 92.0)
    # 1088 s: 2 passes (272 s / 92), (1088 - 184) / 6 = 150 more steps → 153, one pass every 75
    assert (plan.total, plan.eval_every) == (153, 75)
    # cheap passes never come closer than the spacing the plan was made with
    plan = Plan(total=66, warmup_ratio=0.1, budget_s=1200, eval_every=4, auto_eval=True)
    plan.fit_budget(3, 20.0, 6.0, 2.0)
    assert (plan.total, plan.eval_every) == (66, 4)


def test_durations() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration("90s") == 90
    assert parse_duration("1.5h") == 5400
    assert parse_duration("600") == 600
    assert TuneConfig(time_budget="8m").time_budget == 480
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("ten minutes")


def test_collapse_alarm_counts_answers_not_outputs_outside_the_answer_space() -> None:
    from honed.train.validate import INVALID, ValPass

    def vp(top: str, share: float) -> ValPass:
        return ValPass(step=6, metric=0.0, loss=None, top_answer=top, top_share=share, general_loss=None,
                       seconds=0.0, predictions=[])

    assert vp("NONE", 0.95).collapsed(0.9, data_top=0.2)  # seed 000: NONE to everything
    assert not vp("NONE", 0.95).collapsed(0.9, data_top=0.6)  # the data itself is mostly one answer
    assert not vp("NONE", 0.85).collapsed(0.9, data_top=0.2)
    assert not vp(INVALID, 0.96).collapsed(0.9, data_top=0.2)  # not yet answering in the answer space


def test_validation_passes_are_spaced_from_the_last_pass_when_the_plan_respaces_them() -> None:
    """The extraction run (2026-12-07): the plan respaced its passes to every 17 steps, then, refitted after the
    pass at step 17, to every 19. As multiples, 19 % 19 == 0 answered the val split again two steps later (two 80 s
    passes for two steps of learning); counted from the last pass the next one comes at 36."""
    from honed.train.session import val_due

    passes = [{"step": 0}, {"step": 17}]
    assert not val_due(passes, 19, 19, last=False)
    assert [s for s in range(18, 40) if val_due(passes, s, 19, last=False)][0] == 36
    assert val_due(passes, 20, 19, last=True)  # the last step always gets its pass
    # a fixed spacing from step 0 is unchanged: passes at the multiples of eval_every
    done = [{"step": 0}]
    for s in range(1, 13):
        if val_due(done, s, 4, last=False):
            done.append({"step": s})
    assert [p["step"] for p in done] == [0, 4, 8, 12]


def test_early_stopping_waits_for_the_last_quarter_of_a_decaying_rate() -> None:
    """The demo of 2026-12-07: best val 0.801 at step 66, then 4 passes below it; at step 104 of 168 the learning
    rate was still at 40% and the run stopped, shipping 0.753. Now it anneals on; a constant rate stops at once."""
    from honed.train.session import early_stop

    assert not early_stop(4, 4, 104, 168)
    assert early_stop(4, 4, 126, 168)
    assert not early_stop(3, 4, 160, 168)  # patience not spent
    assert early_stop(4, 4, 104, 168, schedule="constant")
    assert early_stop(4, 4, 104, None)  # no plan (DPO's trainer): patience alone


def test_checkpoint_is_the_best_val_metric_with_near_ties_going_to_the_lower_val_loss() -> None:
    """Banking77-NONE's measured val curve (72 items): the metric alone keeps step 78 and stops the run four passes
    later while the val loss is still falling; a near-tie (0.943 vs 0.948, under one item's 1/72) goes to step 117's
    lower loss, and a pass one item or more below the highest metric never wins on loss."""
    from honed.train.session import beats
    from honed.train.validate import ValPass

    curve = [(13, 0.222, 3.369), (26, 0.516, 1.086), (39, 0.622, 0.428), (52, 0.741, 0.225), (65, 0.737, 0.197),
             (78, 0.948, 0.126), (91, 0.822, 0.124), (104, 0.882, 0.102), (117, 0.943, 0.090), (130, 0.912, 0.090)]

    def select(tie: float) -> list[int]:
        best, top, chosen = None, None, []
        for step, metric, loss in curve:
            vp = ValPass(step=step, metric=metric, loss=loss, top_answer="x", top_share=0.1, general_loss=None,
                         seconds=0.0, predictions=[])
            if beats(vp, best, top, tie):
                best = vp
                chosen.append(step)
            top = metric if top is None else max(top, metric)
        return chosen

    assert select(tie=1 / 72) == [13, 26, 39, 52, 65, 78, 117]  # 65: 0.737 vs 0.741, loss 0.197 < 0.225
    assert select(tie=0.0) == [13, 26, 39, 52, 78]  # by the metric alone
    assert select(tie=0.1) == [13, 26, 39, 52, 65, 78, 104, 117]  # 130: 0.912, loss no lower than 117's
