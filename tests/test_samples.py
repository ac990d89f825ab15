"""Reference-anchored rewards: what the judge sees, and how verdicts become rewards."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmr1_plugins import Scorer
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.health import METRICS
from rmr1_plugins.rewards.inputs import (
    _CHAT_FORMATS,
    Sample,
    SampleError,
    extract_response,
    find_turns,
    read_label,
    recover_turns,
)
from rmr1_plugins.rewards.metrics import KEYS
from rmr1_plugins.rewards.samples import build_example, fallback, prepare
from rmr1_plugins.testing import ScriptedJudge

CHATML = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
LLAMA3 = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
END = RewardConfig().inputs.end_tokens


def test_response_is_what_follows_the_prompt_without_end_tokens():
    assert extract_response(CHATML + "4<|im_end|>\n<|endoftext|>", CHATML, END) == "4"
    assert extract_response(LLAMA3 + "It is 4.<|eot_id|>", LLAMA3, END) == "It is 4."
    # A tokenizer round trip that changed the start of the prompt: anchor on its end.
    assert extract_response(" " + CHATML.replace("Be brief.", "Be  brief.") + "4", CHATML, END)
    assert extract_response(CHATML + "<|im_end|>", CHATML, END) == ""  # empty is judged
    with pytest.raises(SampleError, match="field 'query': does not contain the prompt"):
        extract_response("something else", CHATML, END)


def test_labels_plain_json_string_or_object():
    assert read_label("4") == ("4", None)
    assert read_label('{"reference": "4", "question": "2+2?"}') == ("4", "2+2?")
    assert read_label({"reference": "4"}) == ("4", None)
    assert read_label("{not json") == ("{not json", None)
    [turn] = read_label({"reference": "4", "question": [{"role": "user", "content": "q"}]})[1]
    assert turn.role == "user" and turn.content == "q"
    for bad, match in [
        ("", "reference answer is empty"),
        ("  ", "reference answer is empty"),
        (None, "must be a string, got NoneType"),
        (3, "must be a string, got int"),
        ({"answer": "4"}, "needs a 'reference' key"),
        ({"reference": "4", "question": ""}, "'question' is empty"),
        ({"reference": "4", "question": [{"role": "assistant", "content": "x"}]}, "end with"),
        (
            {
                "reference": "4",
                "question": [{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}],
            },
            "roles",
        ),
        ({"reference": "4", "question": 7}, "list of"),
    ]:
        with pytest.raises(SampleError, match=match):
            read_label(bad)


def test_question_comes_from_the_label_else_the_chat_turns_else_the_prompt():
    config = RewardConfig()
    [user] = build_example(Sample(CHATML + "4", CHATML, "4"), config)[0].context
    # the system turn is folded into the next user turn, as in every trainer (as_context)
    assert (user.role, user.content) == ("user", "Be brief.\n\nWhat is 2+2?")
    turns = build_example(Sample(LLAMA3 + "4", LLAMA3, "4"), config)[0].context
    assert [(t.role, t.content) for t in turns] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "What is 2+2?"),
    ]
    labelled = build_example(
        Sample(CHATML + "4", CHATML, {"reference": "4", "question": "Q"}), config
    )
    assert labelled[0].context[0].content == "Q"
    plain = build_example(Sample("Q: 2+2? A: 4", "Q: 2+2? A:", "4"), config)[0]
    assert plain.context[0].content == "Q: 2+2? A:" and plain.response_a == "4"
    as_written = build_example(
        Sample(CHATML + "4", CHATML, "4"), RewardConfig(inputs={"question": "prompt"})
    )
    assert as_written[0].context[0].content == CHATML.strip()
    system_question = {
        "reference": "4",
        "question": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}],
    }
    [folded] = build_example(Sample(CHATML + "4", CHATML, system_question), config)[0].context
    assert (folded.role, folded.content) == ("user", "Be brief.\n\nQ")
    gemma = "<start_of_turn>user\nQ<end_of_turn>\n<start_of_turn>model\n"
    assert recover_turns(gemma)[0].content == "Q"
    assert recover_turns("no chat template here") is None


def test_response_in_slot_a_reference_in_slot_b_and_clipping():
    example, clipped = build_example(Sample(CHATML + "five", CHATML, "4"), RewardConfig())
    assert (example.response_a, example.response_b, clipped) == ("five", "4", False)
    config = RewardConfig(inputs={"max_response_chars": 3})
    example, clipped = build_example(Sample(CHATML + "abcdef", CHATML, "4"), config)
    assert clipped and example.response_a == "abc\n[... 3 characters cut]"


def test_lone_surrogates_are_replaced():
    example, _ = build_example(
        Sample(CHATML + "bad \ud800 text", CHATML, "r\udfff"), RewardConfig()
    )
    assert example.response_a == "bad ? text" and example.response_b == "r?"
    example.model_dump_json()  # encodable


def judged(*completions, order="given", config=None):
    """The reward of one sample whose judge answers ``completions`` in turn."""
    texts = iter(completions)
    backend = ScriptedJudge(lambda user, i: next(texts))
    scorer = Scorer(backend, order=order)
    config = config or RewardConfig()
    judging = prepare(Sample(CHATML + "four", CHATML, "4"), config)
    return judging.finish(scorer.score([judging.example])[0], config)


A, B = "<answer>[[A]]</answer>", "<answer>[[B]]</answer>"


def test_rewards_follow_the_response_slot_and_scale():
    config = RewardConfig()
    assert judged(A).reward == 1.0
    assert judged(B).reward == 0.0
    signed = RewardConfig(win=1, loss=-1)
    loss = judged(B, config=signed)
    assert (loss.reward, loss.score) == (-1.0, 0.0)
    assert signed.fallback_reward == 0.0 and config.fallback_reward == 0.5


def test_both_orders_disagreeing_give_the_midpoint_and_log_it():
    # Swapped order: the judge's raw A is the reference, so "A" twice is a disagreement.
    reward = judged(A, A, order="both")
    assert reward.reward == 0.5 and reward.kind is None
    assert reward.extra_logs["rmr1_health/orders_agree"] == 0.0
    agree = judged(A, B, order="both")
    assert agree.reward == 1.0 and agree.extra_logs["rmr1_health/orders_agree"] == 1.0


def test_an_unparsed_judgment_follows_on_unparsed_as_in_every_group():
    excluded = judged("I like both.", config=RewardConfig(fallback=0.25, on_unparsed="exclude"))
    assert (excluded.reward, excluded.kind) == (0.25, "unparsed")
    logs = excluded.extra_logs
    assert logs["rmr1_fallback"] == 1.0 and logs["rmr1_unparsed"] == 1.0
    assert logs["rmr1_judgments"] == 1.0 and logs["rmr1_unparsed_comparisons"] == 1.0
    assert "the judge gave no verdict" in excluded.error
    tie = judged("I like both.", config=RewardConfig(fallback=0.25))  # on_unparsed: tie
    assert (tie.reward, tie.kind, tie.extra_logs["rmr1_fallback"]) == (0.5, None, 0.0)
    assert tie.extra_logs["rmr1_unparsed_comparisons"] == 1.0
    loss = judged("I like both.", config=RewardConfig(win=1, loss=-1, on_unparsed="loss"))
    assert (loss.reward, loss.kind) == (-1.0, None)
    half = judged("no idea", B, order="both")
    assert half.reward == 1.0 and half.extra_logs["rmr1_health/unparsed"] == 0.5  # one counts


def test_soft_outcome_and_an_identical_response_follow_the_group_rules(scripted):
    config = RewardConfig(outcome="soft")
    judging = prepare(Sample(CHATML + "four", CHATML, "4"), config)
    result = Scorer(scripted()).score([judging.example])[0].model_copy(update={"prob_a": 0.75})
    assert judging.finish(result, config).reward == 0.75
    same = prepare(Sample(CHATML + "4", CHATML, "4"), RewardConfig())
    assert same.example is None  # the response is the reference: a tie, the judge not asked
    tie = same.finish(None, RewardConfig())
    assert tie.reward == 0.5 and tie.extra_logs["rmr1_judgments"] == 0.0


def test_every_reward_has_the_contract_keys():
    config = RewardConfig(on_unparsed="exclude")
    keys = list(judged(A).extra_logs)
    assert keys == list(judged("x", config=config).extra_logs)
    assert keys == list(fallback(config, "timeout", "slow").extra_logs)
    assert keys == list(KEYS)
    assert {f"rmr1_health/{name}" for name in METRICS} <= set(keys)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
labels = (
    json_values
    | st.builds(lambda r, q: {"reference": r, "question": q}, json_values, json_values)
    | st.builds(lambda v: json.dumps(v), json_values)
)


@settings(max_examples=300, deadline=None)
@given(query=st.text(), prompt=st.text(), label=labels, chat=st.booleans())
def test_building_a_pair_never_raises_anything_but_a_sample_error(query, prompt, label, chat):
    if chat:  # make the prompt a real chat prompt more often than chance would
        prompt = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
        query = prompt + query
    try:
        example, _ = build_example(Sample(query, prompt, label), RewardConfig())
    except SampleError:
        return
    assert example.context[-1].role == "user"
    for template in ("rmr1-instruct", "rmr1-reasoning"):
        Scorer(ScriptedJudge(), template).template.render(example)


def strip_one_by_one(response: str, tokens: tuple[str, ...]) -> str:
    """The former end-token loop (one copy per token: quadratic), kept as the reference."""
    stripped = True
    while stripped:
        response = response.rstrip()
        stripped = False
        for token in tokens:
            if response.endswith(token):
                response = response[: -len(token)]
                stripped = True
    return response.strip()


@given(st.lists(st.sampled_from(["x", " ", "\n", "</s>", "<|im_end|>", "<|eot_id|>", "<", "s>"])))
def test_end_token_strip_matches_the_former_loop(pieces):
    response = "".join(pieces)
    assert extract_response("P" + response, "P", END) == strip_one_by_one(response, tuple(END))


@pytest.mark.parametrize(
    ("start", "header", "end"),
    [
        ("<|im_start|>", r"\n", "<|im_end|>"),
        ("<|start_header_id|>", r"<\|end_header_id\|>\n\n", "<|eot_id|>"),
        ("<start_of_turn>", r"\n", "<end_of_turn>"),
    ],
)
@given(data=st.data())
def test_turn_finder_matches_the_lazy_regex(start, header, end, data):
    plain_header = header.replace("\\", "")
    pieces = [start, plain_header, end, "user", "model", "x", "\n", " ", "<", "|"]
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=30)))
    lazy = re.findall(rf"{re.escape(start)}(\w+){header}(.*?){re.escape(end)}", text, re.DOTALL)
    chat_format = next(f for f in _CHAT_FORMATS if f[0] == start)
    assert find_turns(text, *chat_format) == lazy


def test_unreadable_json_labels_name_the_field():
    with pytest.raises(SampleError, match="field 'labels': JSON object with a number too long"):
        read_label('{"reference": "4", "n": 1' + "0" * 5000 + "}")
    with pytest.raises(SampleError, match="field 'labels': JSON object nested too deeply"):
        read_label('{"reference": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_a_missing_or_empty_reference_is_no_reference_not_a_bad_label():
    from rmr1_plugins.rewards.inputs import NoReference, label_parts

    for missing in ["", "  ", None, {"answer": "4"}, {"reference": None}, '{"reference": ""}']:
        with pytest.raises(NoReference):
            read_label(missing)
    with pytest.raises(SampleError) as wrong_type:
        read_label(3)
    assert not isinstance(wrong_type.value, NoReference)  # a label of the wrong type: bad_input
    question = {"reference": "", "question": "2+2?"}
    assert label_parts(question) == (None, "2+2?")  # cohorts keep the question, judge in-group
