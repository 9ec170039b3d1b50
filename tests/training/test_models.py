"""Model zoo: parameter counts, shapes on odd sizes, iterations, seeding, gradients, determinism, config."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.models import MODEL_NAMES, build_model, count_parameters, fold_batchnorm  # noqa: E402

# Pinned counts (default arguments). Calibration: the authors' U-Net (8..128) has about 487k parameters
# (ours: 487,298) and the paper's DRU(4) has 0.36M (ours: 362,258).
EXPECTED_PARAMETERS = {
    "unet-b": 487_298,
    "unet-g": 487_298,
    "rec-simple": 487_442,
    "rec-last": 543_026,
    "rec-middle": 352_610,
    "canvas": 502_338,
    "sru0": 975_490,
    "sru1": 973_202,
    "sru2": 962_130,
    "sru3": 915_154,
    "sru4": 325_266,
    "dru0": 1_465_506,
    "dru1": 1_462_498,
    "dru2": 1_443_922,
    "dru3": 1_357_106,
    "dru4": 362_258,
}
SEEDABLE = {"rec-simple", "canvas"} | {f"{k}{lvl}" for k in ("sru", "dru") for lvl in range(5)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry_lists_every_model():
    assert set(MODEL_NAMES) == set(EXPECTED_PARAMETERS)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_count_is_pinned(name):
    assert count_parameters(build_model(name)) == EXPECTED_PARAMETERS[name]


def test_unet_parameter_count_by_hand():
    # conv3x3 + norm(2C) twice per block; encoder 3->8..64->128, decoder with 2x2 transposed convs, 1x1 to 2.
    def block(cin, cout):
        return 9 * cin * cout + cout + 2 * cout + 9 * cout * cout + cout + 2 * cout

    widths = [8, 16, 32, 64, 128]
    enc = block(3, 8) + sum(block(widths[k], widths[k + 1]) for k in range(4))
    dec = sum(4 * widths[k + 1] * widths[k] + widths[k] + block(2 * widths[k], widths[k]) for k in range(4))
    assert count_parameters(build_model("unet-g")) == enc + dec + 8 * 2 + 2


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_on_odd_sizes_and_iterations(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        outs = model(x)
        more = model(x, iterations=5)
    expected = 3 if model.recurrent else 1
    assert model.default_iterations == expected
    assert len(outs) == expected
    assert len(more) == (5 if model.recurrent else 1)  # anytime: run past the trained count
    for out in outs + more:
        assert out.shape == (2, 2, 37, 53)
        assert torch.isfinite(out).all()
    # the first iterations do not depend on how many follow
    torch.testing.assert_close(outs[0], more[0])
    torch.testing.assert_close(outs[-1], more[len(outs) - 1])


@pytest.mark.parametrize("name", ["unet-g", "rec-simple", "rec-middle", "canvas", "sru0", "dru4"])
def test_paper_size_230x306(name):
    model = build_model(name, **({"iterations": 2} if name != "unet-g" else {})).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 230, 306))
    assert [o.shape for o in outs] == [(1, 2, 230, 306)] * (2 if model.recurrent else 1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_s0_seeding(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(1, 3, 32, 48)
    assert model.seedable == (name in SEEDABLE)
    s0 = torch.zeros(1, 1, 32, 48)
    s0[..., 8:24, 10:30] = 1.0
    if not model.seedable:
        with pytest.raises(ValueError, match="seed"):
            model(x, s0=s0)
        return
    with torch.no_grad():
        plain = model(x, iterations=1)[0]
        seeded = model(x, iterations=1, s0=s0)[0]
        seeded_again = model(x, iterations=1, s0=s0)[0]
    assert not torch.allclose(plain, seeded)
    torch.testing.assert_close(seeded, seeded_again)


def test_s0_must_match_the_image():
    model = build_model("dru4")
    with pytest.raises(ValueError, match="s0 must have shape"):
        model(torch.randn(1, 3, 32, 32), s0=torch.ones(1, 2, 32, 32))


def test_canvas_seed_reproduces_the_probability():
    # seeding sets the canvas to [log(1-p), log p]; with the update head zeroed the output is that canvas
    model = build_model("canvas").eval()
    torch.nn.init.zeros_(model.to_canvas.weight)
    torch.nn.init.zeros_(model.to_canvas.bias)
    p = torch.rand(1, 1, 32, 32) * 0.98 + 0.01
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32), iterations=2, s0=p)[-1]
    torch.testing.assert_close(out.softmax(1)[:, 1:], p, atol=1e-5, rtol=1e-5)


def test_init_zeros_differs_from_ones():
    x = torch.randn(1, 3, 32, 32)
    torch.manual_seed(3)
    ones = build_model("sru4", init="ones").eval()
    torch.manual_seed(3)
    zeros = build_model("sru4", init="zeros").eval()
    with torch.no_grad():
        assert not torch.allclose(ones(x)[0], zeros(x)[0])


@pytest.mark.parametrize("name", ["rec-simple", "rec-last", "rec-middle", "canvas", "sru1", "dru4"])
def test_gradients_flow_through_all_iterations(name):
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    outs = model(x, iterations=3)
    outs[-1].sum().backward()  # loss on the last iteration only
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    if name in ("rec-last", "rec-middle"):
        return  # their logits are not fed back; the hidden state carries the recurrence (checked above)
    # the first iteration's logits feed the last one (s_t = softmax(logits_t), or the canvas): not detached
    outs = model(x, iterations=3)
    (grad,) = torch.autograd.grad(outs[-1].sum(), outs[0])
    assert float(grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["unet-b", "canvas", "dru2"])
def test_construction_is_deterministic_by_seed(name):
    torch.manual_seed(7)
    a = build_model(name)
    torch.manual_seed(7)
    b = build_model(name)
    torch.manual_seed(8)
    c = build_model(name)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point() and sa[k].numel() > 4)


@pytest.mark.parametrize("name", ["unet-g", "rec-last", "sru3", "canvas"])
def test_config_rebuilds_the_same_model(name):
    model = build_model(name, hidden=16) if name not in ("unet-g",) else build_model(name, base_channels=4)
    clone = build_model(**model.config)
    clone.load_state_dict(model.state_dict())  # same architecture: strict load succeeds
    assert clone.config == model.config
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[-1], clone.eval()(x)[-1])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("unet-x")
    with pytest.raises(ValueError, match="unknown argument"):
        build_model("dru4", hiden=16)
    with pytest.raises(ValueError, match="fixed"):
        build_model("dru4", level=2)
    with pytest.raises(ValueError, match="norm"):
        build_model("unet-g", norm="layer")
    with pytest.raises(ValueError, match="init"):
        build_model("sru4", init="twos")(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="iterations"):
        build_model("sru4")(torch.randn(1, 3, 32, 32), iterations=0)


def test_step_interface_matches_forward():
    torch.manual_seed(0)
    model = build_model("dru3").eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        outs = model(x, iterations=3)
        state = model.initial_state(x)
        for expected in outs:
            logits, state = model.step(x, state)
            torch.testing.assert_close(logits, expected)


def test_batchnorm_folding_keeps_outputs():
    torch.manual_seed(0)
    model = build_model("unet-b")
    model.train()
    with torch.no_grad():
        for _ in range(3):  # give the running statistics non-trivial values
            model(torch.randn(2, 3, 32, 32) * 2 + 1)
    model.eval()
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        before = model(x)[0]
        fold_batchnorm(model)
        after = model(x)[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_fed_back_mask_is_the_softmax():
    from training.models.base import mask_from_logits

    logits = torch.randn(2, 2, 5, 7) * 10
    torch.testing.assert_close(mask_from_logits(logits), logits.softmax(1))
    three = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(mask_from_logits(three), three.softmax(1))


@pytest.mark.parametrize("name", ["rec-simple", "sru0", "dru4", "canvas"])
def test_stop_mask_gradient_cuts_only_the_mask_path(name):
    """With stop_mask_gradient the first iteration's logits no longer reach the last one through the fed-back
    mask; the forward values are unchanged."""
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.randn(1, 3, 32, 32)
    flowing = model(x, iterations=3)
    stopped = model(x, iterations=3, stop_mask_gradient=True)
    for a, b in zip(flowing, stopped):
        torch.testing.assert_close(a, b)
    assert not stopped[-1].grad_fn is None  # still trainable
    (grad,) = torch.autograd.grad(flowing[-1].sum(), flowing[0], retain_graph=True)
    assert float(grad.abs().sum()) > 0
    if name in ("rec-simple", "canvas"):  # the mask (canvas) is the only state: nothing else links t=1 to t=3
        (grad,) = torch.autograd.grad(stopped[-1].sum(), stopped[0], allow_unused=True)
        assert grad is None or float(grad.abs().sum()) == 0
