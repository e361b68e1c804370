import os

import pytest
import torch

from lightning_llm import parts, registry
from lightning_llm.metrics.classification import F1, Precision, Recall
from lightning_llm.models.chunked_head import TokenScores

METRICS = {"precision": Precision, "recall": Recall, "f1": F1}


def one_hot_logits(preds: list[int], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(preds), num_classes).float()  # argmax = preds


def reference(preds: list[int], labels: list[int]) -> dict[str, float]:
    """Macro scores by the textbook definitions, one class at a time, in plain Python."""
    classes = sorted(set(preds) | set(labels))
    per_class = {"precision": [], "recall": [], "f1": []}
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(preds, labels, strict=True))
        predicted, actual = preds.count(c), labels.count(c)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class["precision"].append(precision)
        per_class["recall"].append(recall)
        per_class["f1"].append(f1)
    return {name: sum(scores) / len(scores) for name, scores in per_class.items()}


def test_hand_computed_example():
    # labels: 0 0 0 1 1 2 ; preds: 0 0 1 1 2 2
    # class 0: tp 2, fp 0, fn 1 -> p 1, r 2/3, f1 0.8
    # class 1: tp 1, fp 1, fn 1 -> p 1/2, r 1/2, f1 1/2
    # class 2: tp 1, fp 1, fn 0 -> p 1/2, r 1, f1 2/3
    labels, preds = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    expected = {
        "precision": (1 + 0.5 + 0.5) / 3,
        "recall": (2 / 3 + 0.5 + 1) / 3,
        "f1": (0.8 + 0.5 + 2 / 3) / 3,
    }
    for name, cls in METRICS.items():
        metric = cls(3)
        metric.update(one_hot_logits(preds, 3), torch.tensor(labels))
        assert metric.compute().item() == pytest.approx(expected[name]), name


@pytest.mark.parametrize("seed", range(5))
def test_against_reference_maths(seed):
    g = torch.Generator().manual_seed(seed)
    num_classes = 6
    labels = torch.randint(0, num_classes, (300,), generator=g)
    logits = torch.randn(300, num_classes, generator=g) + 2.0 * torch.nn.functional.one_hot(
        labels, num_classes
    )
    expected = reference(logits.argmax(-1).tolist(), labels.tolist())
    for name, cls in METRICS.items():
        metric = cls(num_classes)
        for start in range(0, 300, 64):  # in batches: the result must not depend on how it was split
            metric.update(logits[start : start + 64], labels[start : start + 64])
        assert metric.compute().item() == pytest.approx(expected[name]), name
        assert all(state.shape == (num_classes,) for state in metric.metric_state.values())  # counts only


def test_classes_absent_from_labels_and_predictions_are_not_averaged():
    """Class 2 is predicted but never a label, 3 a label never predicted, 4 and 5 neither: the mean is over
    classes 0-3 (the reference), not over all six outputs."""
    preds, labels = [0, 0, 1, 2, 1, 1], [0, 1, 1, 3, 1, 0]
    expected = reference(preds, labels)
    for name, cls in METRICS.items():
        metric = cls(6)
        metric.update(one_hot_logits(preds, 6), torch.tensor(labels))
        assert metric.compute().item() == pytest.approx(expected[name]), name
        assert metric.compute().item() != pytest.approx(expected[name] * 4 / 6)


def test_a_class_never_predicted_scores_zero_precision():
    metric = Precision(2)
    metric.update(one_hot_logits([0, 0, 0], 2), torch.tensor([0, 1, 1]))
    assert metric.compute().item() == pytest.approx((1 / 3 + 0) / 2)


def test_ignore_index_token_shaped_logits_and_chunked_scores():
    logits = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))  # (B, T, C)
    labels = torch.randint(0, 4, (2, 5), generator=torch.Generator().manual_seed(1))
    labels[0, 3:] = -100
    scored = labels != -100
    expected = reference(logits.argmax(-1)[scored].tolist(), labels[scored].tolist())
    for outputs in (logits, TokenScores(torch.zeros(2, 5), logits.argmax(-1))):
        metric = F1(4)
        metric.update(outputs, labels)
        assert metric.compute().item() == pytest.approx(expected["f1"])
    with pytest.raises(ValueError, match=r"logits of shape \(3, 2\) need labels of shape \(3,\)"):
        F1(2).update(torch.randn(3, 2), torch.zeros(3, 1, dtype=torch.long))


def _ddp_worker(rank: int, world_size: int, port: int, results) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        metrics = {name: cls(3) for name, cls in METRICS.items()}
        if rank == 0:  # rank 1 sees no batch at all, as a short validation split can leave it
            for metric in metrics.values():
                metric.update(one_hot_logits([0, 0, 1, 1, 2, 2], 3), torch.tensor([0, 0, 0, 1, 1, 2]))
        results[rank] = {name: metric.compute().item() for name, metric in metrics.items()}
    finally:
        torch.distributed.destroy_process_group()


def test_sync_across_processes_with_an_idle_one():
    port = 29500 + os.getpid() % 1000
    results = torch.multiprocessing.Manager().dict()
    # fork: the workers start in a fraction of spawn's time, with no re-import of torch
    torch.multiprocessing.start_processes(_ddp_worker, args=(2, port, results), nprocs=2, start_method="fork")
    expected = reference([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2])
    for rank in (0, 1):
        assert results[rank] == pytest.approx(expected)


def test_the_plugins_take_the_models_number_of_classes(make_cfg):
    """A classification run stores the number of classes its data decided in model.num_classes; a metric
    left without one takes it. Without any, the metric names the setting."""
    for name, cls in METRICS.items():
        metric = registry.build("metric", name, num_classes=4)
        assert isinstance(metric, cls) and metric.num_classes == 4 and metric.higher_is_better
        with pytest.raises(ValueError, match=f"metric {name} needs num_classes"):
            registry.build("metric", name)
    classify = ["model=encoder", "objective=classification", "metrics=[accuracy,f1]"]
    assert parts.metrics(make_cfg(*classify, "model.num_classes=5"))["f1"].num_classes == 5
    explicit = make_cfg(*classify, "model.num_classes=5", "metrics=[{name: f1, num_classes: 3}]")
    assert parts.metrics(explicit)["f1"].num_classes == 3
    with pytest.raises(ValueError, match="metric f1 needs num_classes >= 1, got None"):
        parts.metrics(make_cfg("metrics=[f1]"))


def test_a_class_metric_on_token_scores_says_which_objective_it_fits():
    """metrics of a classification preset kept with objective=masked_lm: a torchmetrics traceback at the first
    validation ("Detected more unique values in target than expected")."""
    import pytest
    import torch

    from lightning_llm.metrics.classification import F1

    labels = torch.full((2, 4), -100)
    labels[0, 1] = 41  # a masked token's id
    with pytest.raises(ValueError, match=r"metric f1 scores 3 classes, but a label is 41: the objective's"):
        F1(3).update(torch.zeros(2, 4, 50), labels)
