"""Pure pieces of the bake-off: arm parsing, the Pareto frontier, the cost model (hand-computed cases)."""

from __future__ import annotations

import pytest

from honed.cost import (CloudPrice, HardwareProfile, breakeven_requests_per_day, cloud_cost_per_1k, load_hardware,
                        load_prices, local_cost_per_1k)
from honed.errors import UserError
from honed.evaluate.bakeoff import parse_arm, pareto_flags

pytestmark = pytest.mark.unit


def test_parse_arm_forms() -> None:
    a = parse_arm("smollm2-135m")
    assert a.model == "smollm2-135m" and a.backend == "llamacpp" and a.display() == "smollm2-135m"
    b = parse_arm("/m/x.Q8_0.gguf,label=q8,constrained=true,temperature=0.7,think=off")
    assert (b.model, b.label, b.constrained, b.temperature, b.think) == ("/m/x.Q8_0.gguf", "q8", True, 0.7, False)
    c = parse_arm("model=qwen,backend=openai,base_url=http://127.0.0.1:8080/v1")
    assert c.display() == "qwen" and c.base_url.endswith("/v1")
    assert parse_arm("/m/x.Q8_0.gguf,constrained=false").display() == "x.Q8_0 [constrained=False]"


@pytest.mark.parametrize("text, msg", [
    ("smollm2-135m,colour=red", "unknown key 'colour'"),
    ("smollm2-135m,constrained=maybe", "constrained must be true or false"),
    ("label=x", "no model"),
    ("smollm2-135m,temperature=9", "temperature"),
    ("smollm2-135m,oops", "is not key=value"),
])
def test_parse_arm_errors(text: str, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        parse_arm(text)


def test_pareto_hand_cases() -> None:
    pts = [
        {"quality": 0.9, "p95": 300, "memory": 500, "cost": 0.02},  # best quality
        {"quality": 0.8, "p95": 100, "memory": 300, "cost": 0.01},  # fastest, cheapest
        {"quality": 0.7, "p95": 200, "memory": 400, "cost": 0.015},  # dominated by #1
        {"quality": 0.8, "p95": 100, "memory": 300, "cost": 0.01},  # tie with #1: not dominated
        {"quality": 0.6, "p95": 50, "memory": None, "cost": 0.02},  # fastest; memory unknown is skipped
    ]
    assert pareto_flags(pts, maximize={"quality"}) == [True, True, False, True, True]
    noisy = [{"quality": 0.5, "memory": 274.3}, {"quality": 0.5, "memory": 273.9}]
    assert pareto_flags(noisy, {"quality"}) == [False, True]
    assert pareto_flags(noisy, {"quality"}, tolerance={"memory": 0.05}) == [True, True]


def test_cost_model_by_hand() -> None:
    rented = HardwareProfile(name="vm", rental_usd_per_hour=0.36)
    # 0.5 s per request, busy around the clock: 1000 requests take 500 s = 0.13889 h of $0.36/h = $0.05
    assert local_cost_per_1k(rented, 0.5) == pytest.approx(0.05)
    # at 10,000 requests/day the $8.64 daily rent is spread over 10 x 1K
    assert local_cost_per_1k(rented, 0.5, requests_per_day=10_000) == pytest.approx(0.864)
    owned = HardwareProfile(name="gpu", purchase_usd=1095.84, amortization_months=36, watts=200,
                            electricity_usd_per_kwh=0.25)
    assert owned.fixed_usd_per_day == pytest.approx(1.0)
    assert owned.usd_per_busy_hour == pytest.approx(0.05)
    price = CloudPrice(name="c", input_per_mtok=0.5, output_per_mtok=2.0)
    assert cloud_cost_per_1k(price, 400, 10) == pytest.approx(0.22)
    # saving per request 0.00022 - 0.36 s of 0.05 $/h = 0.00022 - 0.000005 → 1.0 / 0.000215 requests/day
    assert breakeven_requests_per_day(owned, 0.36, 0.22) == pytest.approx(1.0 / 0.000215)
    assert breakeven_requests_per_day(owned, 0.36, 0.001) is None  # the cloud is cheaper at any volume
    with pytest.raises(ValueError, match="either purchase_usd"):
        HardwareProfile(name="x", purchase_usd=1, rental_usd_per_hour=1)


def test_builtin_tables_are_dated_and_load() -> None:
    hw, date = load_hardware("rtx-4060")
    assert hw.purchase_usd and date[:4].isdigit()
    prices, pdate = load_prices()
    assert len(prices) >= 3 and pdate[:4].isdigit()
    with pytest.raises(UserError, match="unknown hardware profile 'tpu'"):
        load_hardware("tpu")
