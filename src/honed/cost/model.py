"""The cost model: pure functions over a hardware profile and a dated cloud price table."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from honed.errors import UserError


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = ""
    description: str = ""
    purchase_usd: float | None = None
    """Purchase price of the machine, amortized over `amortization_months`."""
    amortization_months: float = 36
    watts: float = 0
    """Average power draw under load."""
    electricity_usd_per_kwh: float = 0.30
    rental_usd_per_hour: float | None = None
    """Rented hardware: the hourly price replaces purchase and power."""
    concurrency: int = 1
    """Requests served at once at the measured latency."""

    @model_validator(mode="after")
    def _one_pricing(self) -> HardwareProfile:
        if (self.purchase_usd is None) == (self.rental_usd_per_hour is None):
            raise ValueError("give either purchase_usd (owned) or rental_usd_per_hour (rented)")
        return self

    @property
    def fixed_usd_per_day(self) -> float:
        """Cost that accrues whether or not requests arrive: amortization (owned) or rent."""
        if self.rental_usd_per_hour is not None:
            return self.rental_usd_per_hour * 24
        return (self.purchase_usd or 0) / (self.amortization_months * 30.44)

    @property
    def usd_per_busy_hour(self) -> float:
        """Marginal cost of an hour of computing: power (owned); rent is fixed, so 0 extra (rented)."""
        if self.rental_usd_per_hour is not None:
            return 0.0
        return self.watts / 1000 * self.electricity_usd_per_kwh


class CloudPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    input_per_mtok: float
    output_per_mtok: float


def _load_toml(path: Path | None, resource: str) -> dict:
    text = path.read_text(encoding="utf-8") if path else files("honed").joinpath(f"resources/{resource}").read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path or resource}: not valid TOML: {exc}") from None


def load_hardware(name: str = "cpu-2core-vm", path: Path | None = None) -> tuple[HardwareProfile, str]:
    """A named hardware profile and the date of the price list it comes from."""
    raw = _load_toml(path, "hardware.toml")
    profiles = raw.get("profiles", {})
    if name not in profiles:
        raise UserError(f"unknown hardware profile {name!r} in {path or 'the built-in list'}: expected one of "
                        f"{', '.join(profiles)}")
    try:
        return HardwareProfile(name=name, **profiles[name]), str(raw.get("as_of", "undated"))
    except ValidationError as exc:
        raise UserError(f"{path or 'hardware.toml'}: profile {name!r}: {exc.errors()[0]['msg']}") from None


def load_prices(path: Path | None = None) -> tuple[list[CloudPrice], str]:
    raw = _load_toml(path, "cloud_prices.toml")
    try:
        prices = [CloudPrice(name=k, **v) for k, v in raw.get("models", {}).items()]
    except ValidationError as exc:
        raise UserError(f"{path or 'cloud_prices.toml'}: {exc.errors()[0]['msg']}") from None
    return prices, str(raw.get("as_of", "undated"))


def local_cost_per_1k(hw: HardwareProfile, seconds_per_request: float, requests_per_day: float | None = None
                      ) -> float:
    """USD per 1,000 requests on local hardware.

    With `requests_per_day` the fixed cost is spread over that volume; without it the hardware is assumed
    busy around the clock at the measured speed (the lowest cost it can reach).
    """
    busy_hours = 1000 * seconds_per_request / hw.concurrency / 3600
    marginal = busy_hours * hw.usd_per_busy_hour
    if requests_per_day is None:
        capacity_per_day = 86400 * hw.concurrency / seconds_per_request
        return marginal + hw.fixed_usd_per_day * 1000 / capacity_per_day
    return marginal + hw.fixed_usd_per_day * 1000 / requests_per_day


def cloud_cost_per_1k(price: CloudPrice, prompt_tokens: float, completion_tokens: float) -> float:
    """USD per 1,000 requests of the same token volume on a cloud API."""
    return 1000 * (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


def breakeven_requests_per_day(hw: HardwareProfile, seconds_per_request: float, cloud_per_1k: float
                               ) -> float | None:
    """Daily volume above which local is cheaper than the cloud; None if it never is (or cannot keep up)."""
    marginal_per_req = seconds_per_request / hw.concurrency / 3600 * hw.usd_per_busy_hour
    saving_per_req = cloud_per_1k / 1000 - marginal_per_req
    if saving_per_req <= 0:
        return None
    volume = hw.fixed_usd_per_day / saving_per_req
    capacity = 86400 * hw.concurrency / seconds_per_request
    return volume if volume <= capacity else None
