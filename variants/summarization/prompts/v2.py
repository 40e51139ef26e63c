"""Prompt set v2: tighter and query-focused, answering in bullet points.

Every chunk is summarized towards the user's question in at most 40 words; the final answer
is at most 60 words of bullet points. See `variants.summarization.prompts` for the contract.
"""

from hamilton.function_modifiers import tag

PROMPT_VERSION = "v2"

CHUNK_TEMPLATE = (
    "Summarize this excerpt of {content_type} in at most 40 words, as bullet points. "
    "Keep only what helps to answer the question.\n"
    "Question: {query}\n"
    "\n"
    "<document>\n{text}\n</document>"
)

FINAL_TEMPLATE = (
    "Answer the question from these notes on {content_type} in at most 60 words, "
    "as bullet points. Use only the notes.\n"
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
