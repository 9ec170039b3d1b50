import pytest
import torch
import torch.nn.functional as F

from training.loss import iteration_weights, recurrent_loss


def test_weights_grow_to_one_at_last_iteration():
    assert iteration_weights(3, 0.4) == pytest.approx([0.16, 0.4, 1.0])
    assert iteration_weights(1, 0.4) == [1.0]


def test_loss_is_weighted_sum_of_cross_entropies():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (2, 5, 7), generator=g)
    outs = [torch.randn(2, 2, 5, 7, generator=g, requires_grad=True) for _ in range(3)]
    total, per = recurrent_loss(outs, target, alpha=0.4)
    ce = [F.cross_entropy(o, target).item() for o in outs]
    assert per == pytest.approx(ce)
    assert total.item() == pytest.approx(0.16 * ce[0] + 0.4 * ce[1] + ce[2], rel=1e-6)
    total.backward()
    # every iteration receives gradient, the last one most
    norms = [o.grad.norm().item() for o in outs]
    assert all(n > 0 for n in norms)


def test_single_output_is_plain_cross_entropy_and_ignore_index():
    target = torch.tensor([[[0, 1, 255]]])
    logits = torch.tensor([[[[2.0, 0.0, 5.0]], [[0.0, 1.0, -5.0]]]])
    total, _ = recurrent_loss([logits], target)
    expected = F.cross_entropy(logits[..., :2], target[..., :2])
    assert total.item() == pytest.approx(expected.item())


def test_empty_outputs_rejected():
    with pytest.raises(ValueError):
        recurrent_loss([], torch.zeros(1, 2, 2, dtype=torch.long))
