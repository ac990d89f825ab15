"""Verdict probabilities from the real hf backend (SmolLM2-135M-Instruct on CPU)."""

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


def test_hf_reports_the_probability_of_the_letter_it_chose(hf_backend):
    params = SamplingParams(max_new_tokens=16, verdict_probs=True)
    found = {}
    for [generation] in hf_backend.generate([echo("A"), echo("B")], params):
        assert "[[" in generation.text, generation.text
        found[generation.text.split("[[")[-1][:1]] = generation.prob_a
    assert set(found) == {"A", "B"}
    # greedy decoding writes the likelier letter: P(A) > 1/2 exactly when it wrote A
    assert found["A"] > 0.5 > found["B"]
    [[plain]] = hf_backend.generate([echo("A")], SamplingParams(max_new_tokens=16))
    assert plain.prob_a is None  # only when asked for
