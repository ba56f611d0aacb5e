"""The package's documents for people: `usage.md` and `benchmarks.md`.

Both are pure functions of their inputs plus files inside the package and the eval run folders that gate.json
and the ladder name: nothing is re-run, and every number says where it comes from (gate.json, the ladder that
`honed export` measured, or an eval run id), so a reader can check it.

- `usage` — usage.md: what the model does, its prompt, sampling, hardware, limitations, how to retrain
- `examples` — usage.md's copy-paste requests: the exact prompt from the GGUF's chat template, three clients
- `benchmarks` — benchmarks.md: base vs tuned, the quantization ladder, confusions, before/after, failures
- `runs` — what both read from eval run folders (per-item records, confusions, fixes, failures)
- `markdown` — how a number, a CI, a table and a code block are written
"""

from honed.exporting.docs.benchmarks import render_benchmarks
from honed.exporting.docs.usage import render_usage

__all__ = ["render_benchmarks", "render_usage"]
