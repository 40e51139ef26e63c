"""Offline evaluation of an experiment's arms on a dataset, with deterministic evaluators and
LLM judges (DESIGN.md, Evaluation).

- `dataset`: the JSONL rows and their inputs;
- `scorers`: the deterministic evaluators, the judges' score parser, evaluator fingerprints;
- `judges`: `llm_judge` evaluators, each a flow built once by the `FlowRegistry`;
- `cache`: answers and scores in the store, keyed by (row, arm fingerprint, evaluator
  fingerprint), so an interrupted or repeated run redoes only what changed;
- `runner`: `abtest eval`, every arm on every row with bounded concurrency.
"""
