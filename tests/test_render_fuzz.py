"""Property tests: rendering never raises on arbitrary text, and inserts it as written."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmr1_plugins import PairwiseExample, get_template
from rmr1_plugins.guards import neutralize_example
from rmr1_plugins.templates import TemplateError

TEMPLATES = ("rmr1-instruct", "rmr1-reasoning")
turns = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text()}),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(history=turns, question=st.text(), a=st.text(), b=st.text(), guarded=st.booleans())
def test_templates_render_any_text(history, question, a, b, guarded):
    example = PairwiseExample(
        context=[*history, {"role": "user", "content": question}], response_a=a, response_b=b
    )
    if guarded:
        example = neutralize_example(example)
    for name in TEMPLATES:
        messages = get_template(name).render(example)
        user = messages[-1]["content"]
        assert messages[-1]["role"] == "user"
        assert example.response_a in user and example.response_b in user
        assert question in user  # the context is never rewritten, guarded or not


@given(role=st.text().filter(lambda r: r not in ("user", "assistant")), content=st.text())
def test_an_unknown_role_is_a_template_error_naming_it(role, content):
    example = PairwiseExample(
        context=[{"role": role, "content": content}, {"role": "user", "content": "q"}],
        response_a="a",
        response_b="b",
    )
    for name in TEMPLATES:
        with pytest.raises(TemplateError, match="context turn 0 has role"):
            get_template(name).render(example)
