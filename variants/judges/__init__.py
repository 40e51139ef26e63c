r"""LLM judges: Hamilton flows that score another flow's output, run like any experiment arm.

Offline evaluation (`abtest eval`) and online judging score an arm's output with evaluators;
an LLM judge is one of them, and it is a flow like the ones it judges (DESIGN.md, "Flows: the
contract"): a module of Hamilton functions, built by the platform's `FlowRegistry`, its prompt
versioned by git and fingerprinted in every run, its model reached through `llm_client`. So a
judge's prompt can change, be reviewed and be rolled back like any other prompt, and a score
always names the exact judge prompt that gave it.

The judge contract (what the platform relies on):

- `INPUTS` names what the judge reads, chosen from: `answer` (str, the judged arm's output as
  text), `expected` (str with default "", the dataset row's expected value for this evaluator)
  and any input of the judged flow (e.g. `message` of `variants.support_reply`, `user_query`
  of `variants.summarization`). The platform passes only the names listed.
- Config: `model` (str), `temperature` (0.0), `scale_min` and `scale_max` (int or float); the
  judge's nodes read all four (the platform rejects a config key no node reads).
- `FINAL_VARS = ("judgement",)`: the judge model's raw text. The platform, not the judge,
  parses the score: the last match of `score\s*[:=]\s*(-?\d+(?:\.\d+)?)` (any case), else
  the whole text if it is a bare number; no match or a value outside [scale_min, scale_max] is
  a parse failure. So a judge prompt asks the model to end with `Score: <number>` on the scale.
- `SAMPLE_INPUTS` for the dry run; the template node is tagged `prompt_id` and
  `prompt_version`; the completion node returns a `Completion` (its usage is counted), and
  `judgement` returns its text.

Judges here: `helpfulness` (a support reply, against the customer's `message`) and
`summary_quality` (a PDF summary, against the `user_query`). The local model server answers
judge prompts deterministically (`abtest.devtools.local_model_judge`), so demos and tests get
scores without a real model.
"""
