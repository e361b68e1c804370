import pytest

from lightning_llm import registry
from lightning_llm.metrics.qa import QAF1, ExactMatch, exact_match_score, normalize_answer, token_f1


def test_squad_normalisation():
    # the official script's steps: lower, drop punctuation, drop a/an/the, collapse whitespace
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear and THE plum") == "apple pear and plum"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match_and_f1_take_the_best_reference():
    assert exact_match_score("the Eiffel Tower", ["Eiffel Tower.", "Paris"]) == 1.0
    assert exact_match_score("Eiffel", ["Eiffel Tower"]) == 0.0
    # prediction "eiffel", reference "eiffel tower": precision 1, recall 1/2
    assert token_f1("Eiffel", ["Eiffel Tower", "x"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("tower tower", ["tower"]) == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts are clipped
    assert token_f1("Paris", ["Eiffel Tower"]) == 0.0


def test_a_question_without_answer_scores_only_an_empty_prediction():
    assert exact_match_score("", []) == 1.0 and token_f1("", []) == 1.0
    assert exact_match_score("Paris", []) == 0.0 and token_f1("Paris", []) == 0.0
    assert token_f1("", ["Paris"]) == 0.0


def test_the_metrics_average_over_questions_and_merge_as_sums():
    predictions = ["Eiffel", "Paris", ""]
    references = [["Eiffel Tower"], ["paris"], []]
    whole_em, whole_f1 = ExactMatch(), QAF1()
    whole_em.update(predictions, references)
    whole_f1.update(predictions, references)
    assert float(whole_em.compute()) == pytest.approx(2 / 3)
    assert float(whole_f1.compute()) == pytest.approx((2 / 3 + 1 + 1) / 3)
    # two "processes" holding different numbers of questions: summed states give the same value
    first, second = QAF1(), QAF1()
    first.update(predictions[:1], references[:1])
    second.update(predictions[1:], references[1:])
    first.merge_state(second)
    assert float(first.compute()) == pytest.approx(float(whole_f1.compute()))


def test_the_plugins_are_registered_text_metrics():
    for name in ("exact_match", "qa_f1"):
        metric = registry.build("metric", name)
        assert metric.input_kind == "text"
    with pytest.raises(ValueError, match="reference lists"):
        ExactMatch().update(["a"], [])
