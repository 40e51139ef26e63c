"""A judge flow for the tests that reads the row's `expected` value when there is one: how
well a reply matches a reference answer, on the evaluator's scale. `expected` is optional
(default ""), so the same judge also scores live runs, which have no reference.
"""

from typing import Any

from hamilton.function_modifiers import tag

from abtest import Completion, LLMClient

INPUTS = ("answer", "expected")
FINAL_VARS = ("judgement",)
SAMPLE_INPUTS: dict[str, Any] = {
    "answer": "A double charge is a temporary hold that disappears within 3 business days.",
    "expected": "hold",
}


@tag(prompt_id="test-reference-judge", prompt_version="v1")
def reference_judge_template() -> str:
    """v1: how well the reply covers the reference."""
    return (
        "Rate the reply on a scale from {low} to {high}: does it answer like the reference?\n\n"
        "<question>\n{expected}\n</question>\n\n<reply>\n{answer}\n</reply>\n\n"
        "End with `Score: <number from {low} to {high}>`."
    )


def judge_prompt(
    reference_judge_template: str,
    answer: str,
    expected: str = "",
    scale_min: float | int = 1,
    scale_max: float | int = 5,
) -> str:
    """The template with the reply, the reference (or nothing) and the scale filled in."""
    text = reference_judge_template.replace("{answer}", answer).replace("{expected}", expected)
    return text.replace("{low}", f"{scale_min:g}").replace("{high}", f"{scale_max:g}")


def judge_completion(
    judge_prompt: str, llm_client: LLMClient, model: str = "gpt-4o-mini", temperature: float = 0.0
) -> Completion:
    """The judge model's call."""
    messages = [{"role": "user", "content": judge_prompt}]
    return llm_client.complete(messages, model=model, temperature=float(temperature))


def judgement(judge_completion: Completion) -> str:
    """The judge's text; the platform parses its last `Score: N`."""
    return judge_completion.text.strip()
