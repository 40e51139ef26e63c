"""Judge a PDF summary against the user's question (an LLM judge flow).

summary_quality_judge_prompt -> judge_prompt -> judge_completion -> judgement. The rubric
rewards a summary that answers the question asked, is concise, and is faithful: it reports what
the document says and does not drift to other topics or add claims of its own. The judge sees
the question and the summary, not the PDF, so faithfulness is judged from the summary alone
(hedged, invented or off-topic statements); a dataset row's expected keyword is checked by a
deterministic evaluator instead.

Inputs: `answer` (the summary judged) and `user_query` (the question the summary answers).
Config: `model`, `temperature`, `scale_min`, `scale_max`. Output: `judgement`, the model's
text, which ends with `Score: N`; the platform parses the score (see `variants.judges`).
"""

from typing import Any

from hamilton.function_modifiers import tag

from abtest import Completion, LLMClient
from variants import rendering as _rendering

INPUTS = ("answer", "user_query")
"""What the judge reads: the summary and the user's question."""

FINAL_VARS = ("judgement",)
"""The judge model's raw text; the platform parses its last `Score: N`."""

SAMPLE_INPUTS: dict[str, Any] = {
    "answer": "The pilot cost 4.6 million dollars, over its 4 million budget, mostly in lost "
    "fares.",
    "user_query": "What did the pilot cost and was it over budget?",
}
"""A run `abtest validate` makes (with an offline stub model)."""

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_SCALE_MIN = 1
DEFAULT_SCALE_MAX = 10

_TEMPLATE = (
    "You are grading a summary of a document, written to answer a user's question. Rate the "
    "summary on a scale from {scale_min} to {scale_max}, where {scale_min} is useless and "
    "{scale_max} is excellent.\n"
    "\n"
    "Rubric:\n"
    "- It answers the user's question directly, with the facts the question asks for.\n"
    "- It is concise: at most 50 words. Longer summaries lose points.\n"
    "- It is faithful: it reports what the document says, without invented claims or "
    "unrelated topics.\n"
    "\n"
    "<question>\n{question}\n</question>\n"
    "\n"
    "<summary>\n{answer}\n</summary>\n"
    "\n"
    "Give a one-line reason, then end with a final line "
    "`Score: <number from {scale_min} to {scale_max}>`."
)


@tag(prompt_id="summary-quality-judge", prompt_version="v1")
def summary_quality_judge_prompt() -> str:
    """v1: answers the question, at most 50 words, faithful."""
    return _TEMPLATE


def judge_prompt(
    summary_quality_judge_prompt: str,
    answer: str,
    user_query: str,
    scale_min: float | int = DEFAULT_SCALE_MIN,
    scale_max: float | int = DEFAULT_SCALE_MAX,
) -> str:
    """The rubric rendered with the summary, the question and the scale."""
    if not scale_min < scale_max:
        raise ValueError(f"scale_min ({scale_min}) must be below scale_max ({scale_max})")
    return _rendering.render(
        summary_quality_judge_prompt,
        answer=answer.strip(),
        question=user_query.strip(),
        scale_min=f"{scale_min:g}",
        scale_max=f"{scale_max:g}",
    )


def judge_completion(
    judge_prompt: str,
    llm_client: LLMClient,
    model: str = DEFAULT_MODEL,
    temperature: float | int = 0.0,
) -> Completion:
    """The LLM call that grades the summary."""
    return llm_client.complete(
        [{"role": "user", "content": judge_prompt}], model=model, temperature=float(temperature)
    )


def judgement(judge_completion: Completion) -> str:
    """The judge's text: a reason, then `Score: N`."""
    return judge_completion.text.strip()
