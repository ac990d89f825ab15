import pytest
from pydantic import ValidationError

from rmr1_plugins import PairwiseExample


def test_rm_r1_labels_are_accepted():
    ex = PairwiseExample(
        context=[{"role": "user", "content": "q"}], response_a="a", response_b="b", label="model_b"
    )
    assert ex.label == "B"
    assert ex.swapped().label == "A" and ex.swapped().response_a == "b"


@pytest.mark.parametrize("label", ["C", "tie", 1, "a"])
def test_labels_outside_a_b_are_rejected(label):
    with pytest.raises(ValidationError, match="label must be"):
        PairwiseExample(
            context=[{"role": "user", "content": "q"}], response_a="a", response_b="b", label=label
        )


def test_context_must_end_with_a_user_turn():
    with pytest.raises(ValidationError, match="must end with a user turn"):
        PairwiseExample(
            context=[{"role": "assistant", "content": "hi"}], response_a="a", response_b="b"
        )


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError, match="response_c"):
        PairwiseExample.from_row(
            {
                "context": [{"role": "user", "content": "q"}],
                "response_a": "a",
                "response_b": "b",
                "response_c": "c",
            }
        )


def test_trl_preference_rows_as_strings_and_messages():
    plain = PairwiseExample.from_row({"prompt": "2+2?", "chosen": "4", "rejected": "5"})
    assert (plain.context[0].content, plain.response_a, plain.response_b, plain.label) == (
        "2+2?",
        "4",
        "5",
        "A",
    )
    chat = PairwiseExample.from_row(
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        }
    )
    assert chat == plain


def test_trl_row_with_two_assistant_turns_is_rejected():
    with pytest.raises(ValueError, match="exactly one assistant message"):
        PairwiseExample.from_row(
            {"prompt": "q", "chosen": [{"role": "assistant", "content": "x"}] * 2, "rejected": "y"}
        )
