"""abtest: prompt A/B experiments on Hamilton flows.

What a flow author imports from here, and nothing else:

- `LLMClient`: the type of the injected `llm_client` input; call
  `llm_client.complete(messages, model=..., temperature=...)`;
- `Completion`: what `complete` returns (`text`, tokens, cost); nodes returning one (or a list
  of them) have their usage summed into the run's record;
- `FlowInputError`: raise it in a node for input the flow cannot use (the API answers 422).

Layers, imports pointing down only (`tests/test_layers.py` checks it):

1. schema: `abtest.experiments` (experiment files), `abtest.event_fields` (the event wire
   format: fields, stream keys, `Exposure`/`Outcome`, encode/decode), `abtest.settings`
   (every environment variable, parsed in one place);
2. core, pure: `abtest.router`, `abtest.tracking`; `analysis` (needs layer 1 only);
3. flow runtime: `abtest.flows`, `abtest.llm`, `abtest.tokens`, `abtest.prompts`,
   `abtest.platform`;
4. edges: `abtest.events`, `abtest.store`, `abtest.api`, `abtest.client`, `abtest.cli`,
   `abtest.telemetry`;
5. development tooling, never imported by the serving path: `abtest.devtools` (local model
   server, demo).

The names are resolved lazily so that `import abtest` (and the CLI's quick commands) do not
pay for the openai SDK or Hamilton.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from abtest.flows.errors import FlowInputError
    from abtest.llm import Completion, LLMClient

__all__ = ["Completion", "FlowInputError", "LLMClient"]

_PUBLIC = {
    "Completion": "abtest.llm",
    "LLMClient": "abtest.llm",
    "FlowInputError": "abtest.flows.errors",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'abtest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
