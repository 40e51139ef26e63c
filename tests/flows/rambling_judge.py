"""A judge flow for the tests whose answers never parse: its prompt asks for a summary of the
reply instead of a score, so the local model server summarizes (no `Score: N` in its text) and
every verdict is a parse failure. It reads only `answer`, so it runs without stored inputs.
"""

from typing import Any

from hamilton.function_modifiers import tag

from abtest import Completion, LLMClient

INPUTS = ("answer",)
FINAL_VARS = ("judgement",)
SAMPLE_INPUTS: dict[str, Any] = {
    "answer": "A double charge is a temporary hold that disappears within 3 business days."
}


@tag(prompt_id="test-rambling-judge", prompt_version="v1")
def rambling_judge_template() -> str:
    """v1: a summary request (reviewers later grade it between the two given bounds)."""
    return (
        "Summarize the text below in one sentence for a colleague; they grade replies later, "
        "between {low} and {high} points.\n\n{answer}"
    )


def judge_prompt(
    rambling_judge_template: str,
    answer: str,
    scale_min: float | int = 1,
    scale_max: float | int = 5,
) -> str:
    """The template with the reply and the bounds filled in."""
    return (
        rambling_judge_template.replace("{answer}", answer)
        .replace("{low}", f"{scale_min:g}")
        .replace("{high}", f"{scale_max:g}")
    )


def judge_completion(
    judge_prompt: str, llm_client: LLMClient, model: str = "gpt-4o-mini", temperature: float = 0.0
) -> Completion:
    """The judge model's call."""
    messages = [{"role": "user", "content": judge_prompt}]
    return llm_client.complete(messages, model=model, temperature=float(temperature))


def judgement(judge_completion: Completion) -> str:
    """The model's text: a summary, without a score."""
    return judge_completion.text.strip()
