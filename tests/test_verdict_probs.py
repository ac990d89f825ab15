"""Reading P(A) against P(B) at the verdict letter, however the tokenizer split ``[[A]]``."""

import math

import pytest

from rmr1_plugins.verdict_probs import TokenChoice, VerdictProb, verdict_prob_a


def choice(text: str, p: float, **others: float) -> TokenChoice:
    return TokenChoice(
        text, math.log(p), {text: math.log(p), **{k: math.log(v) for k, v in others.items()}}
    )


def prob(tokens: list[TokenChoice]) -> float:
    read = verdict_prob_a(tokens)
    assert read is not None
    return read.prob_a


def test_a_letter_token_on_its_own():
    tokens = [
        choice("<answer>", 1.0),
        choice("[[", 1.0),
        choice("A", 0.6, B=0.3),
        choice("]]", 1.0),
    ]
    assert prob(tokens) == pytest.approx(0.6 / 0.9)


def test_b_written_gives_the_probability_of_a_against_it():
    tokens = [choice("<answer>[[", 1.0), choice("B", 0.75, A=0.25), choice("]]</answer>", 1.0)]
    assert prob(tokens) == pytest.approx(0.25)


def test_letter_merged_with_brackets():
    tokens = [choice("verdict: ", 1.0), choice("[[A", 0.9, **{"[[B": 0.05}), choice("]]", 1.0)]
    assert prob(tokens) == pytest.approx(0.9 / 0.95)
    tokens = [choice("[[", 1.0), choice("B]]", 0.5, **{"A]]": 0.5})]
    assert prob(tokens) == pytest.approx(0.5)


def test_the_last_verdict_counts_even_when_text_follows():
    tokens = [
        choice("I first thought [[", 1.0),
        choice("A", 0.99, B=0.01),
        choice("]]. <answer>[[", 1.0),
        choice("B", 0.8, A=0.2),
        choice("]]</answer> Hope this helps.", 1.0),
    ]
    assert verdict_prob_a(tokens) == (("B", pytest.approx(0.2)))


def test_missing_alternative_is_zero_and_no_verdict_is_none():
    assert verdict_prob_a([choice("[[A]]", 0.7)]) == VerdictProb("A", 1.0)
    assert verdict_prob_a([choice("[[B]]", 0.7)]) == VerdictProb("B", 0.0)
    assert verdict_prob_a([choice("no verdict here", 1.0)]) is None
    assert verdict_prob_a([]) is None


def test_long_adversarial_text_is_linear():
    tokens = [choice("[[ " * 200_000, 1.0), choice("A", 0.5, B=0.5), choice("]]", 1.0)]
    assert verdict_prob_a(tokens) == VerdictProb("A", 0.5)  # the last "[[ " and "A" form it
