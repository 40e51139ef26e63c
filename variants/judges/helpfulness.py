"""Judge how helpful a support reply is to the customer's message (an LLM judge flow).

helpfulness_judge_prompt -> judge_prompt -> judge_completion -> judgement. The rubric rewards a
reply that answers what the customer asked, is specific and actionable (names the place, time
or step that solves the problem), and is brief: customers read replies on a phone, and a reply
that buries the answer in policy text helps less. The word limit in the rubric matches the
limit of the support-reply flow's v2 rewrite (`max_reply_words`, 40 by default).

Inputs: `answer` (the reply judged) and `message` (the customer's message it answers). Config:
`model`, `temperature`, `scale_min`, `scale_max`. Output: `judgement`, the model's text, which
ends with `Score: N`; the platform parses the score (see `variants.judges`).
"""

from typing import Any

from hamilton.function_modifiers import tag

from abtest import Completion, LLMClient
from variants import rendering as _rendering

INPUTS = ("answer", "message")
"""What the judge reads: the reply and the customer's message."""

FINAL_VARS = ("judgement",)
"""The judge model's raw text; the platform parses its last `Score: N`."""

SAMPLE_INPUTS: dict[str, Any] = {
    "answer": "A double charge is usually a temporary authorization hold that disappears "
    "within 3 business days.",
    "message": "I was charged twice for my order this month, can you check my invoice?",
}
"""A run `abtest validate` makes (with an offline stub model)."""

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_SCALE_MIN = 1
DEFAULT_SCALE_MAX = 10

_TEMPLATE = (
    "You are grading a customer support reply. Rate how helpful the reply is to the "
    "customer's message on a scale from {scale_min} to {scale_max}, where {scale_min} is "
    "useless and {scale_max} is excellent.\n"
    "\n"
    "Rubric:\n"
    "- It answers what the customer asked, not a different question.\n"
    "- It is specific and actionable: it names the place, the time or the step that solves "
    "the customer's problem.\n"
    "- It is brief: at most 40 words. Longer replies lose points.\n"
    "\n"
    "<message>\n{message}\n</message>\n"
    "\n"
    "<reply>\n{answer}\n</reply>\n"
    "\n"
    "Give a one-line reason, then end with a final line "
    "`Score: <number from {scale_min} to {scale_max}>`."
)


@tag(prompt_id="helpfulness-judge", prompt_version="v1")
def helpfulness_judge_prompt() -> str:
    """v1: answers the question, specific and actionable, at most 40 words."""
    return _TEMPLATE


def judge_prompt(
    helpfulness_judge_prompt: str,
    answer: str,
    message: str,
    scale_min: float | int = DEFAULT_SCALE_MIN,
    scale_max: float | int = DEFAULT_SCALE_MAX,
) -> str:
    """The rubric rendered with the reply, the message and the scale."""
    if not scale_min < scale_max:
        raise ValueError(f"scale_min ({scale_min}) must be below scale_max ({scale_max})")
    return _rendering.render(
        helpfulness_judge_prompt,
        answer=answer.strip(),
        message=message.strip(),
        scale_min=f"{scale_min:g}",
        scale_max=f"{scale_max:g}",
    )


def judge_completion(
    judge_prompt: str,
    llm_client: LLMClient,
    model: str = DEFAULT_MODEL,
    temperature: float | int = 0.0,
) -> Completion:
    """The LLM call that grades the reply."""
    return llm_client.complete(
        [{"role": "user", "content": judge_prompt}], model=model, temperature=float(temperature)
    )


def judgement(judge_completion: Completion) -> str:
    """The judge's text: a reason, then `Score: N`."""
    return judge_completion.text.strip()
