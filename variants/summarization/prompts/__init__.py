"""Prompt sets as modules: each module defines the summarizer's prompt nodes, nothing else.

Module switching: an arm lists a prompt module after the base flow,
`modules: [variants.summarization, variants.summarization.prompts.v2]`, and the prompt nodes
here replace the base module's nodes of the same name (`FlowRegistry` builds with Hamilton's
`allow_module_overrides()`, and rejects a later module that redefines any node other than a
prompt node). No `@config.when`: the module *is* the choice.

Contract of a prompt set (what `variants.summarization` renders):

- `summarize_chunk_of_text_prompt() -> str`, fields `{content_type}`, `{query}`, `{text}`;
- `summarize_text_from_summaries_prompt() -> str`, fields `{content_type}`, `{query}`,
  `{summaries}`;
- each tagged `@tag(prompt_id=..., prompt_version=...)`; literal braces are written `{{ }}`.

The text of each set lives here once (`CHUNK_TEMPLATE`, `FINAL_TEMPLATE`);
`variants.summarization`'s `@config.when(prompt_version=...)` nodes return the same strings, so
both ways of selecting a set run byte-identical prompts (same sha256 in every run record).
"""
