"""Rendering is byte-exact with RM-R1's recorded prompts."""

import hashlib
import json
from pathlib import Path

import pytest

from rmr1_plugins import PairwiseExample, get_template
from rmr1_plugins.templates import TemplateError, template_text

DATA = Path(__file__).parent / "data"
PINNED_SHA256 = {
    "INSTRUCT_SYSTEM_PROMPT.txt": "e0bf09a87f19837abf172278c348e8fc6ed36034f4f39b98191910533c3df3ed",
    "INSTRUCT_SINGLE_USER_PROMPT_TEMPLATE.txt": "5fa3baf9813bdf0ed9b8601be6fe162ab82e37467e0843c32cfbc22792c65ac2",
    "INSTRUCT_MULTI_USER_PROMPT_TEMPLATE.txt": "8cb7158fc42faa0b78f398ea4f9e475dc204cf9bfd0e81e2d4984059dd5252d9",
    "REASONING_SINGLE_PROMPT_TEMPLATE.txt": "2a0d3caf562d59367bbbefb29c400438e0312def4fbb73fb2e70be8661ddd770",
    "REASONING_MULTI_PROMPT_TEMPLATE.txt": "3abf19ca3d35017131fe26861e09ab3bb343c0fe96e901cea2fe5aeb1a67bedb",
}


@pytest.mark.parametrize("filename", sorted(PINNED_SHA256))
def test_template_bytes_are_pinned(filename):
    data = template_text(filename).encode("utf-8")
    assert hashlib.sha256(data).hexdigest() == PINNED_SHA256[filename]
    assert not data.endswith(b"\n")


def demo_rows():
    return [json.loads(line) for line in (DATA / "demo_outputs.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("row", demo_rows(), ids=lambda r: r["variant"])
def test_render_matches_recorded_rm_r1_prompt(row):
    name = {"instruct": "rmr1-instruct", "deepseek": "rmr1-reasoning"}[row["variant"]]
    example = PairwiseExample(
        context=[{"role": "user", "content": row["question"]}],
        response_a=row["answer_a"],
        response_b=row["answer_b"],
        label=row["label"],
    )
    rendered = get_template(name).render(example)
    assert rendered == row["messages"]
    assert json.dumps(rendered).encode() == json.dumps(row["messages"]).encode()


def multi_turn_example():
    return PairwiseExample(
        context=[
            {"role": "user", "content": "Hi {there}"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Sum 2+2?"},
        ],
        response_a="4",
        response_b="5",
    )


def test_multi_turn_serialises_each_side_with_its_chatbot_name():
    user = get_template("rmr1-instruct").render(multi_turn_example())[1]["content"]
    expected_a = "User: Hi {there}\nChatbot A: Hello.\nUser: Sum 2+2?\nChatbot A: 4"
    expected_b = "User: Hi {there}\nChatbot B: Hello.\nUser: Sum 2+2?\nChatbot B: 5"
    assert user == template_text("INSTRUCT_MULTI_USER_PROMPT_TEMPLATE.txt").format(
        conversation_1=expected_a, conversation_2=expected_b
    )


def test_reasoning_family_has_no_system_message():
    messages = get_template("rmr1-reasoning").render(multi_turn_example())
    assert [m["role"] for m in messages] == ["user"]
    assert messages[0]["content"].startswith("Please act as an impartial judge")
    assert "Chatbot B: 5\n[The End of the Conversation between Chatbot B" in messages[0]["content"]


def test_instruct_family_always_sends_its_system_prompt():
    messages = get_template("rmr1-instruct").render(multi_turn_example())
    assert messages[0] == {"role": "system", "content": template_text("INSTRUCT_SYSTEM_PROMPT.txt")}


def test_system_turn_is_rejected_with_its_position():
    example = PairwiseExample(
        context=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "q"}],
        response_a="a",
        response_b="b",
    )
    with pytest.raises(TemplateError, match="context turn 0 has role 'system'"):
        get_template("rmr1-instruct").render(example)


def test_text_is_inserted_without_escaping_or_stripping():
    example = PairwiseExample(
        context=[{"role": "user", "content": "  {answer_a} \n"}], response_a="", response_b="}{"
    )
    user = get_template("rmr1-instruct").render(example)[1]["content"]
    assert user.startswith("[Client Question]\n  {answer_a} \n\n")
    assert "[The Start of Chatbot A's Response]\n\n[The End" in user
    assert "Response]\n}{\n[The End of Chatbot B's" in user


# --- which template a model gets (RM-R1's run_generative.py: model_modifier) ------------------
@pytest.mark.parametrize(
    ("model", "template", "rule"),
    [
        ("gaotang/RM-R1-Qwen2.5-Instruct-7B", "rmr1-instruct", "RM-R1's rule"),
        ("gaotang/RM-R1-Qwen2.5-Instruct-14B", "rmr1-instruct", "RM-R1's rule"),
        ("gaotang/RM-R1-Qwen2.5-Instruct-32B", "rmr1-instruct", "RM-R1's rule"),
        ("gaotang/RM-R1-DeepSeek-Distilled-Qwen-7B", "rmr1-reasoning", "RM-R1's rule"),
        ("gaotang/RM-R1-DeepSeek-Distilled-Qwen-14B", "rmr1-reasoning", "RM-R1's rule"),
        ("gaotang/RM-R1-DeepSeek-Distilled-Qwen-32B", "rmr1-reasoning", "RM-R1's rule"),
        ("/models/rm-r1-deepseek-distilled-qwen-7b", "rmr1-reasoning", "RM-R1's rule"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "rmr1-reasoning", "DeepSeek distillation"),
        ("runs/rlvr/DeepSeek-R1-Distill-Qwen-14B-rmr1", "rmr1-reasoning", "DeepSeek distill"),
        ("Qwen/Qwen2.5-7B-Instruct", "rmr1-instruct", "the default"),
        ("/models/my-judge", "rmr1-instruct", "the default"),
        (None, "rmr1-instruct", "the default"),
        # the last path component that names a family counts: the model's own name, not the
        # folders above it; a checkpoint or snapshot folder follows the model folder it is in
        ("/data/instruct_evals/RM-R1-DeepSeek-Distilled-Qwen-7B", "rmr1-reasoning", "RM-R1's"),
        ("/data/deepseek-distilled/RM-R1-Qwen2.5-Instruct-7B/", "rmr1-instruct", "RM-R1's rule"),
        ("runs/rmr1-deepseek-distill-7b/checkpoint-100", "rmr1-instruct", "the default"),
        ("/ckpt/DeepSeek-R1-Distill-Qwen-7B/step-9", "rmr1-reasoning", "DeepSeek distillation"),
        ("/runs/RM-R1-DeepSeek-Distilled-Qwen-7B/checkpoint-500", "rmr1-reasoning", "RM-R1's"),
        (
            "/hf/hub/models--gaotang--RM-R1-DeepSeek-Distilled-Qwen-14B/snapshots/" + "a" * 40,
            "rmr1-reasoning",
            "RM-R1's rule",
        ),
        ("C:\\models\\RM-R1-DeepSeek-Distilled-Qwen-7B", "rmr1-reasoning", "RM-R1's rule"),
        ("/models/RM-R1-Instruct/", "rmr1-instruct", "RM-R1's rule"),
    ],
)
def test_the_template_follows_the_model_name_as_rm_r1s_eval_does(model, template, rule):
    from rmr1_plugins.settings import load_config
    from rmr1_plugins.templates import template_for_model

    assert template_for_model(model)[0] == template
    config = load_config(None, backend={"name": "constant", "model": model})
    assert config.template == template and rule in config.template_choice
    # an explicit template wins, whatever the name says
    other = "rmr1-instruct" if template == "rmr1-reasoning" else "rmr1-reasoning"
    explicit = load_config(None, backend={"name": "constant", "model": model}, template=other)
    assert (explicit.template, explicit.template_choice) == (other, "set explicitly")


def test_the_six_released_checkpoints_get_rm_r1s_own_case_sensitive_choice():
    from rmr1_plugins.eval.published import RM_R1
    from rmr1_plugins.templates import template_for_model

    def rm_r1(model: str) -> str | None:  # run_generative.py's model_modifier, verbatim rule
        if "RM-R1" in model and "Instruct" in model:
            return "rmr1-instruct"
        if "RM-R1" in model and "DeepSeek-Distilled" in model:
            return "rmr1-reasoning"
        return None

    assert len(RM_R1) == 6
    for hub in RM_R1:
        for model in (hub, f"/models/{hub}", f"/srv/instruct/{hub.split('/')[-1]}/"):
            assert template_for_model(model)[0] == rm_r1(hub), model


def test_a_config_file_or_variable_template_wins_over_the_name(tmp_path, monkeypatch):
    from rmr1_plugins.settings import load_config

    path = tmp_path / "judge.yaml"
    path.write_text("template: rmr1-instruct\nbackend: {name: constant}\n")
    model = {"backend": {"model": "gaotang/RM-R1-DeepSeek-Distilled-Qwen-7B"}}
    assert load_config(path, **model).template == "rmr1-instruct"
    monkeypatch.setenv("RMR1_TEMPLATE", "rmr1-instruct")
    assert load_config(None, **model).template == "rmr1-instruct"


@pytest.fixture
def recorded():
    """A ``recorded`` backend that keeps every conversation it is sent."""
    from rmr1_plugins.backends.base import Backend, Generation
    from rmr1_plugins.testing.judges import backends_registered

    sent = []

    class Recorded(Backend):
        name = "recorded"

        def generate(self, conversations, params):
            sent.extend(conversations)
            return [[Generation("<answer>[[A]]</answer>", "stop", 1)] for _ in conversations]

    with backends_registered({"recorded": Recorded}):
        yield sent


def test_score_and_render_say_the_template_and_render_what_score_sends(tmp_path, capsys, recorded):
    from rmr1_plugins.cli import main

    pairs = tmp_path / "pairs.jsonl"
    context = [{"role": "user", "content": "2+2?"}]
    pairs.write_text(json.dumps({"context": context, "response_a": "4", "response_b": "5"}))
    model = ["--model", "/data/instruct/RM-R1-DeepSeek-Distilled-Qwen-7B"]
    assert main(["score", str(pairs), "--backend", "recorded", *model, "-o", "-"]) == 0
    err = capsys.readouterr().err.splitlines()
    why = "template: rmr1-reasoning (from the model name, RM-R1's rule"
    assert err[-2].startswith(why) and err[-1].startswith("rmr1 score: ")  # beside the summary
    assert main(["render", str(pairs), *model]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["messages"] == recorded[0]  # one user message, as sent
    assert captured.err == ""  # render stays quiet: its output shows the template
    # a template in the config file wins over the name, as it does for score
    config = tmp_path / "judge.yaml"
    config.write_text("template: rmr1-instruct\n")
    assert main(["render", str(pairs), *model, "--config", str(config)]) == 0
    messages = json.loads(capsys.readouterr().out)["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]


def test_eval_says_and_records_the_template_it_chose(tmp_path, capsys):
    from rmr1_plugins.cli import main

    data = Path(__file__).parent / "data" / "eval" / "rewardbench_filtered.jsonl"
    argv = ["eval", "--benchmark", "rewardbench", "--data", str(data), "--backend", "constant"]
    model = "gaotang/RM-R1-DeepSeek-Distilled-Qwen-14B"
    assert main([*argv, "--model", model, "-o", str(tmp_path / "a")]) == 0
    assert "template: rmr1-reasoning (from the model name, RM-R1's rule" in capsys.readouterr().err
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["template"]["name"] == "rmr1-reasoning"
    assert report["run"]["template"] == "rmr1-reasoning"
    assert (
        "Template: `rmr1-reasoning`, from the model name"
        in (tmp_path / "a" / "report.md").read_text()
    )
    flags = [*argv, "--model", model, "--template", "rmr1-instruct", "-o", str(tmp_path / "b")]
    assert main(flags) == 0
    assert "template: rmr1-instruct (set explicitly)" in capsys.readouterr().err
