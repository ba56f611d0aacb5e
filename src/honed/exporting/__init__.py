"""Stage 7, export: a gated tune run → a delivery package (`honed export RUN`, `export.export`).

One module per idea: `merge` (adapter into base), `convert` (llama.cpp's own HF → GGUF converter), `quantize`
and `ladder` (the quant ladder, re-evaluated, the rung chosen by task score), `template` (the round trip that
proves every exported form sees the training tokens), `gotemplate` and `modelfile` (Ollama), `package` (the
layout serve, monitor and verify read), `docs` (usage.md, benchmarks.md).
"""
