"""Stage 6, the gate: prove the fine-tune beat its base on the locked test, or say why not.

`gate(run)` evaluates base and tuned (base + adapter) through one backend on the locked test, pairs them item by
item, and writes `RUN/gate.json`: PASS only when every check passes — improvement (relative gain ≥ the task's
minimum with the paired CI of the difference above 0), forgetting (general prompts), collapse, latency, and
optionally a named bake-off arm. `honed export` refuses a run whose gate did not pass, unless forced.
"""

from honed.gating.document import GATE_FILE, GateDocument, read_gate_document
from honed.gating.run import GateResult, gate, read_tune_run

__all__ = ["GATE_FILE", "GateDocument", "GateResult", "gate", "read_gate_document", "read_tune_run"]
