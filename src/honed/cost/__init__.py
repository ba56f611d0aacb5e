"""Cost: local hardware vs cloud APIs, per 1K requests, from measured throughput (seed 004, chapter 1)."""

from honed.cost.model import (CloudPrice, HardwareProfile, breakeven_requests_per_day, cloud_cost_per_1k,
                              load_hardware, load_prices, local_cost_per_1k)

__all__ = ["CloudPrice", "HardwareProfile", "breakeven_requests_per_day", "cloud_cost_per_1k", "load_hardware",
           "load_prices", "local_cost_per_1k"]
