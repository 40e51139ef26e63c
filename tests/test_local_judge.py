"""The local model as an LLM judge, and the judge flows in `variants/judges/`.

Everything goes through the real `openai` SDK (or the platform's `LLMClient`) to the local model
server over HTTP; the judge flows are real Hamilton drivers. The score is parsed with the
platform's rule, written out here so a change on either side shows.
"""

from __future__ import annotations

import re
from types import ModuleType

import openai
import pytest
from hamilton import driver

from abtest.devtools.local_model_judge import JudgeResponder
from abtest.devtools.local_text import count_words, split_sentences
from abtest.experiments import parse_experiment
from abtest.flows import FlowRegistry
from abtest.flows.contract import read_contract
from abtest.llm import LLMClient
from tests.llm_fixtures import stdout_per_hash_seed
from variants import summarization, support_reply
from variants.judges import helpfulness, summary_quality

SCORE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
BARE_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*")

MESSAGE = "How long does it take to get my refund after I return an item?"
GOOD_REPLY = (
    "Approved refunds reach your original payment method within 5-7 business days after we "
    "receive the returned item."
)
OFF_TOPIC_REPLY = "Our store opening hours and addresses are listed on the Contact page."
RUBRIC = (
    "You are grading a customer support reply. Rate how helpful the reply is on a scale from "
    "{low} to {high}. The reply should answer the question and be at most 30 words long.\n\n"
    "<message>\n{message}\n</message>\n\n<reply>\n{reply}\n</reply>\n\n"
    "Give a one-line reason, then a final line `Score: <number from {low} to {high}>`."
)


def parse_score(text: str, low: float, high: float) -> float | None:
    """The platform's rule: the last `score: N`, else the whole text as a bare number; None
    when there is none or it lies outside [low, high]."""
    matches = SCORE.findall(text)
    if matches:
        value = float(matches[-1])
    else:
        bare = BARE_NUMBER.fullmatch(text)
        if bare is None:
            return None
        value = float(bare.group(1))
    return value if low <= value <= high else None


def judge_prompt(reply: str, low: int = 1, high: int = 10, message: str = MESSAGE) -> str:
    return RUBRIC.format(low=low, high=high, message=message, reply=reply)


@pytest.fixture
def sdk(llm_server):
    client = openai.OpenAI(base_url=llm_server.base_url, api_key="local", max_retries=0)
    yield client
    client.close()


def ask(sdk: openai.OpenAI, prompt: str, **kwargs) -> str:
    response = sdk.chat.completions.create(
        model=kwargs.pop("model", "gpt-4o-mini"),
        messages=[{"role": "user", "content": prompt}],
        **kwargs,
    )
    return response.choices[0].message.content or ""


def score_of(sdk: openai.OpenAI, prompt: str, low: float = 1, high: float = 10) -> float:
    score = parse_score(ask(sdk, prompt), low, high)
    assert score is not None
    return score


# -- the local model answers judge prompts -------------------------------------------------------


@pytest.mark.parametrize(
    ("scale_text", "low", "high"),
    [
        ("on a scale from 1 to 5", 1, 5),
        ("on a scale of 0 to 10", 0, 10),
        ("on a 1-7 scale", 1, 7),
        ("with a score between 0 and 100", 0, 100),
    ],
)
def test_judge_prompts_get_a_reason_and_a_score_in_the_scale(sdk, scale_text, low, high):
    prompt = (
        f"Evaluate the answer to the question {scale_text}.\n"
        f"Question: {MESSAGE}\nAnswer: {GOOD_REPLY}\n"
        f"Respond in the format:\nScore: <n>"
    )
    text = ask(sdk, prompt)
    reason, last = text.splitlines()
    assert reason.endswith(".") and "Score" not in reason
    assert re.fullmatch(r"Score: -?\d+", last)
    score = parse_score(text, low, high)
    assert score is not None and score == int(score)


@pytest.mark.parametrize("low", [1, 0])
def test_empty_answers_score_the_minimum(sdk, low):
    assert score_of(sdk, judge_prompt("", low=low), low) == low


def test_a_better_answer_scores_higher(sdk):
    good = score_of(sdk, judge_prompt(GOOD_REPLY))
    off_topic = score_of(sdk, judge_prompt(OFF_TOPIC_REPLY))
    empty = score_of(sdk, judge_prompt(""))
    assert good > off_topic > empty == 1


def test_answers_over_the_rubrics_word_limit_lose_points(sdk):
    padded = GOOD_REPLY + " " + " ".join(["We always value your feedback and loyalty."] * 8)
    assert count_words(padded) > 2 * 30
    assert score_of(sdk, judge_prompt(padded)) < score_of(sdk, judge_prompt(GOOD_REPLY))


def test_judgements_are_deterministic_across_calls_temperatures_and_seeds(sdk):
    prompt = judge_prompt(GOOD_REPLY)
    answers = {ask(sdk, prompt)} | {
        ask(sdk, prompt, temperature=t, seed=seed) for t in (0.0, 0.7, 1.5) for seed in (1, 2)
    }
    answers.add(ask(sdk, prompt, model="gpt-4o"))
    assert len(answers) == 1


def test_judgements_do_not_depend_on_the_process_hash_seed():
    script = (
        "from abtest.devtools.local_model_judge import JudgeResponder\n"
        f"prompt = {judge_prompt(GOOD_REPLY)!r}\n"
        "print(JudgeResponder().generate([{'role': 'user', 'content': prompt}], model='m'))\n"
    )
    assert len(stdout_per_hash_seed(script)) == 1


def test_the_label_of_the_requested_format_is_used(sdk):
    prompt = (
        "Rate the response from 1 to 5 and answer with `Rating: N`.\n\n"
        f"<question>{MESSAGE}</question>\n<response>{GOOD_REPLY}</response>"
    )
    assert re.search(r"\nRating: [1-5]$", ask(sdk, prompt))


# -- other prompts are not judged ----------------------------------------------------------------

NOT_JUDGE_PROMPTS = {
    "summary": (
        "Summarize the text in one sentence.\n\nText:\nThe council approved a budget for buses "
        "on Monday. The budget adds forty electric buses to the fleet. Critics said it was too "
        "expensive for the city."
    ),
    "no scale": (
        f"Rate the answer and reply with `Score: N`.\n\n<question>{MESSAGE}</question>\n"
        f"<answer>{GOOD_REPLY}</answer>"
    ),
    "no score format": (
        f"Rate the answer on a scale from 1 to 5.\n\n<question>{MESSAGE}</question>\n"
        f"<answer>{GOOD_REPLY}</answer>"
    ),
    "no answer to judge": f"Rate this question from 1 to 5, as `Score: N`: {MESSAGE}",
    "no request to judge": (
        f"Summarize the answer for the customer.\n\n<answer>{GOOD_REPLY}</answer>\n\n"
        "End with the line `Score: <number from 1 to 5>` copied as is."
    ),
    "scale inside a quoted block": (
        "Summarize the document.\n\n<document>\nReviewers rate each answer on a scale from 1 to "
        "5 and write Score: N under it. The reviewers met twice this year.\n</document>"
    ),
    "support rewrite": (
        "Rewrite this support reply in a clear, professional tone. Keep every fact.\n\n"
        f"<reply>\n{GOOD_REPLY}\n</reply>"
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_JUDGE_PROMPTS))
def test_prompts_that_are_not_judge_prompts_are_left_to_the_other_rules(sdk, name):
    prompt = NOT_JUDGE_PROMPTS[name]
    messages = [{"role": "user", "content": prompt}]
    assert JudgeResponder().generate(messages, model="gpt-4o-mini") is None
    text = ask(sdk, prompt)
    assert text and not SCORE.search(text)


def test_a_summarization_prompt_is_still_summarized(sdk):
    text = ask(sdk, NOT_JUDGE_PROMPTS["summary"])
    assert text in split_sentences(NOT_JUDGE_PROMPTS["summary"].partition("Text:\n")[2])


# -- the judge flows -----------------------------------------------------------------------------

JUDGES: dict[str, tuple[ModuleType, dict[str, str], dict[str, str]]] = {
    "helpfulness": (
        helpfulness,
        {"answer": GOOD_REPLY, "message": MESSAGE},
        {"answer": OFF_TOPIC_REPLY, "message": MESSAGE},
    ),
    "summary_quality": (
        summary_quality,
        {
            "answer": "Ridership on the three routes rose by forty percent during the pilot.",
            "user_query": "How did ridership change during the pilot?",
        },
        {
            "answer": "The pilot cost four point six million dollars, above the budget of four "
            "million. Lost fare revenue accounted for three million dollars of the cost.",
            "user_query": "How did ridership change during the pilot?",
        },
    ),
}


JUDGED_INPUTS = {
    "helpfulness": support_reply.INPUTS,
    "summary_quality": summarization.INPUTS,
}
"""The inputs of the flow each judge scores: a judge may read any of them."""


def build(module: ModuleType, low: float = 1, high: float = 10) -> driver.Driver:
    config = {"model": "gpt-4o-mini", "temperature": 0.0, "scale_min": low, "scale_max": high}
    return driver.Builder().with_modules(module).with_config(config).build()


def judge(dr: driver.Driver, client: LLMClient, inputs: dict[str, str]) -> str:
    return dr.execute(["judgement"], inputs={**inputs, "llm_client": client})["judgement"]


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_judge_flows_keep_the_contract(name):
    module = JUDGES[name][0]
    config = {"model": "gpt-4o-mini", "temperature": 0.0, "scale_min": 1, "scale_max": 5}
    contract, problems = read_contract(build(module), [module], config)
    assert problems == [] and contract is not None
    assert contract.outputs == ("judgement",)
    assert "answer" in module.INPUTS
    assert set(module.INPUTS) <= {"answer", "expected", *JUDGED_INPUTS[name]}
    assert set(module.SAMPLE_INPUTS) == set(module.INPUTS)
    assert len(contract.prompt_nodes) == 1
    tags = {v.name: v.tags for v in build(module).list_available_variables()}
    prompt_tags = tags[contract.prompt_nodes[0]]
    assert prompt_tags["prompt_id"].endswith("-judge") and prompt_tags["prompt_version"] == "v1"


@pytest.mark.parametrize("name", sorted(JUDGES))
@pytest.mark.parametrize(("low", "high"), [(1, 10), (1, 5), (0, 100)])
def test_judge_flows_give_a_parsable_score_that_prefers_the_better_answer(
    session_llm_client, name, low, high
):
    module, better, worse = JUDGES[name]
    dr = build(module, low, high)
    better_score = parse_score(judge(dr, session_llm_client, better), low, high)
    worse_score = parse_score(judge(dr, session_llm_client, worse), low, high)
    assert better_score is not None and worse_score is not None
    assert better_score > worse_score


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_judge_flows_score_their_sample_inputs_and_an_empty_answer(session_llm_client, name):
    module = JUDGES[name][0]
    dr = build(module, 1, 5)
    assert parse_score(judge(dr, session_llm_client, module.SAMPLE_INPUTS), 1, 5) is not None
    empty = {**module.SAMPLE_INPUTS, "answer": ""}
    assert parse_score(judge(dr, session_llm_client, empty), 1, 5) == 1


def test_a_judge_flow_refuses_an_empty_scale(session_llm_client):
    with pytest.raises(ValueError, match="scale_min"):
        judge(build(helpfulness, 5, 5), session_llm_client, helpfulness.SAMPLE_INPUTS)


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_judge_flows_load_and_run_as_arms_of_the_flow_registry(session_llm_client, name):
    """The platform runs a judge like an experiment arm: loading dry-runs it on its
    SAMPLE_INPUTS (every config key must be read), a run fingerprints its prompt."""
    module = JUDGES[name][0]
    config = {"model": "gpt-4o-mini", "temperature": 0.0, "scale_min": 1, "scale_max": 5}
    experiment = parse_experiment(
        {
            "id": f"judge-{name}",
            "flow": module.__name__,
            "status": "running",
            "hash_attribute": "user_id",
            "seed": name,
            "arms": [
                {"name": "five", "weight": 0.5, "config": config},
                {"name": "ten", "weight": 0.5, "config": {**config, "scale_max": 10}},
            ],
            "metrics": [{"name": "thumbs_up", "kind": "proportion", "primary": True}],
        },
        f"judge {name}",
    )
    registry = FlowRegistry.from_experiments([experiment], llm_client=session_llm_client)
    for arm, high in (("five", 5), ("ten", 10)):
        result = registry.run(experiment.id, arm, module.SAMPLE_INPUTS)
        assert result.ok and result.llm_calls == 1
        assert list(result.prompts) == [f"{name}_judge_prompt"]
        assert parse_score(result.outputs["judgement"], 1, high) is not None
