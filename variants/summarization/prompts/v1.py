"""Prompt set v1: the baseline, shaped like Hamilton's knowledge-retrieval summarizer.

No length limits (the model's default length applies) and the chunk prompt ignores the user's
question; only the final prompt answers it. See `variants.summarization.prompts` for the contract.
"""

from hamilton.function_modifiers import tag

PROMPT_VERSION = "v1"

CHUNK_TEMPLATE = (
    "Summarize this text from {content_type}. Extract any key points with reasoning.\n"
    "\n"
    "<document>\n{text}\n</document>"
)

FINAL_TEMPLATE = (
    "Write a summary collated from this collection of key points extracted from "
    "{content_type}. The summary should highlight the core argument, conclusions and evidence, "
    "and answer the user's question.\n"
    "Question: {query}\n"
    "\n"
    "<document>\n{summaries}\n</document>"
)


@tag(prompt_id="summarize-chunk", prompt_version=PROMPT_VERSION)
def summarize_chunk_of_text_prompt() -> str:
    """Template summarizing one chunk; fields {content_type}, {query}, {text}."""
    return CHUNK_TEMPLATE


@tag(prompt_id="final-summary", prompt_version=PROMPT_VERSION)
def summarize_text_from_summaries_prompt() -> str:
    """Template collating the chunk summaries; fields {content_type}, {query}, {summaries}."""
    return FINAL_TEMPLATE
