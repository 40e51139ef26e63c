"""A judge flow for the tests (the judge contract of `variants.judges`): how well a support
reply answers the customer's message, on the evaluator's scale.

Its prompt asks to rate the reply "from <scale_min> to <scale_max>" and to end with
`Score: <n>`, which the local model server answers with a parseable score. It reads a flow
input (`message`), so a run kept without its inputs (ABTEST_RUNS_STORE_INPUTS=off) is a judge
error for it.
"""

from typing import Any

from hamilton.function_modifiers import tag

from abtest import Completion, LLMClient

INPUTS = ("answer", "message")
FINAL_VARS = ("judgement",)
SAMPLE_INPUTS: dict[str, Any] = {
    "answer": "A double charge is a temporary hold that disappears within 3 business days.",
    "message": "I was charged twice for my order, can you check my invoice?",
}


@tag(prompt_id="test-reply-judge", prompt_version="v1")
def reply_judge_template() -> str:
    """v1: covers the customer's question, at most 40 words."""
    return (
        "Rate how helpful the reply is to the customer's message on a scale from {low} to "
        "{high}. It should answer what the customer asked in at most 40 words.\n\n"
        "<message>\n{message}\n</message>\n\n<reply>\n{answer}\n</reply>\n\n"
        "Give a one-line reason, then end with `Score: <number from {low} to {high}>`."
    )


def judge_prompt(
    reply_judge_template: str,
    answer: str,
    message: str,
    scale_min: float | int = 1,
    scale_max: float | int = 5,
) -> str:
    """The template with the reply, the message and the scale filled in."""
    values = {
        "answer": answer,
        "message": message,
        "low": f"{scale_min:g}",
        "high": f"{scale_max:g}",
    }
    text = reply_judge_template
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def judge_completion(
    judge_prompt: str, llm_client: LLMClient, model: str = "gpt-4o-mini", temperature: float = 0.0
) -> Completion:
    """The judge model's call."""
    messages = [{"role": "user", "content": judge_prompt}]
    return llm_client.complete(messages, model=model, temperature=float(temperature))


def judgement(judge_completion: Completion) -> str:
    """The judge's text; the platform parses its last `Score: N`."""
    return judge_completion.text.strip()
