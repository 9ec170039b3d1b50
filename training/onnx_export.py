"""ONNX export of a trained model, checked against torch on the same input (docs/training.md).

Two graphs:
- mode "all": image (B,3,H,W) -> logits (T,B,2,H,W), every iteration of one image (as `model(x, T)`).
- mode "step": (image, state...) -> (logits, state...), one iteration with the recurrent state as input and
  output, for streaming video: feed frame k+1 with the state frame k returned (a recurrent model then refines
  over time instead of over iterations). The initial state (ones or zeros, per the model's config) is written
  in the file's metadata (`kbh_initial_state`), so a runtime needs nothing but the .onnx file.

The legacy TorchScript exporter is used (dynamo=False): the dynamo exporter needs onnxscript, which is not a
dependency. Shapes are fixed at export (default 230x306, the shard size), because the U-Net pads odd sizes with
amounts computed from the shapes at trace time.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

PARITY_TOLERANCE = 1e-4
MODES = ("all", "step")


class AllIterations(nn.Module):
    """image -> stacked logits of T iterations."""

    def __init__(self, model: nn.Module, iterations: int):
        super().__init__()
        self.model, self.iterations = model, iterations

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.model(image, iterations=self.iterations), dim=0)


class OneStep(nn.Module):
    """(image, *state) -> (logits, *state): one self-contained iteration."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, *state: torch.Tensor):
        logits, new_state = self.model.step(image, tuple(state))
        return (logits, *new_state)


def _constant_fill(t: torch.Tensor) -> float:
    value = float(t.flatten()[0])
    if not torch.all(t == value):
        raise ValueError("the model's initial state is not constant; cannot describe it in metadata")
    return value


def export_onnx(model: nn.Module, destination, mode: str = "all", iterations: int | None = None,
                height: int = 230, width: int = 306, batch: int = 1, opset: int = 17) -> dict:
    """Export `model` (eval mode is set) to `destination` (a path or a binary file object).

    Returns a description: input/output names, the example inputs used (numpy) and the metadata written."""
    if mode not in MODES:
        raise ValueError(f"unknown export mode {mode!r}; expected one of {', '.join(MODES)}")
    model.eval()
    iterations = iterations or model.default_iterations
    image = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    meta = {"kbh_model_config": json.dumps(model.config), "kbh_mode": mode, "kbh_height": str(height),
            "kbh_width": str(width)}
    if mode == "all":
        wrapper, args = AllIterations(model, iterations), (image,)
        input_names, output_names = ["image"], ["logits"]
        meta["kbh_iterations"] = str(model.iterations_to_run(iterations))
    else:
        state = model.initial_state(image)
        wrapper, args = OneStep(model), (image, *state)
        names = [f"state{k}" for k in range(len(state))]
        input_names = ["image", *[f"{n}_in" for n in names]]
        output_names = ["logits", *[f"{n}_out" for n in names]]
        meta["kbh_initial_state"] = json.dumps(
            [{"name": f"{n}_in", "shape": list(t.shape), "fill": _constant_fill(t)} for n, t in zip(names, state)])
    wrapper.eval()  # the exporter restores the wrapper's mode afterwards, recursively: keep it eval
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic (shapes are fixed on purpose)
        buffer = io.BytesIO()
        torch.onnx.export(wrapper, args, buffer, dynamo=False, input_names=input_names,
                          output_names=output_names, opset_version=opset)
    import onnx

    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    if hasattr(destination, "write"):
        destination.write(data)
    else:
        from kbh.atomic_file import atomic_write_bytes

        atomic_write_bytes(destination, data)
    return {"inputs": input_names, "outputs": output_names, "metadata": meta,
            "example": {n: a.numpy() for n, a in zip(input_names, args)}, "wrapper": wrapper}


def ort_session(model_bytes_or_path, threads: int = 2, spin: bool = True):
    """An ONNX Runtime CPU session with `threads` intra-op threads and all graph optimisations.

    spin=False stops idle pool threads from busy-waiting: on a shared machine that doubled dru4's frame rate
    at 2 threads (11.4 vs 6.0 frames/s at load average 2.5); on a quiet machine spinning is ORT's default."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    source = str(model_bytes_or_path) if isinstance(model_bytes_or_path, Path) else model_bytes_or_path
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def initial_state_from_metadata(session) -> dict[str, np.ndarray]:
    """The step graph's initial state, rebuilt from the file's metadata."""
    meta = session.get_modelmeta().custom_metadata_map
    if "kbh_initial_state" not in meta:
        raise ValueError("not a step-mode kbh export (no kbh_initial_state metadata)")
    return {s["name"]: np.full(s["shape"], s["fill"], dtype=np.float32) for s in json.loads(meta["kbh_initial_state"])}


def parity(info: dict, session, steps: int = 3) -> float:
    """Max abs difference between torch and ONNX Runtime on the export's example input.

    For the step graph, runs `steps` chained steps (the state returned by one fed to the next) from the
    initial state in the metadata, so the state plumbing is checked as well as one step."""
    wrapper = info["wrapper"]
    example = info["example"]
    if info["metadata"]["kbh_mode"] == "all":
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(example["image"])).numpy()
        got = session.run(["logits"], {"image": example["image"]})[0]
        return float(np.abs(expected - got).max())
    feeds = {"image": example["image"], **initial_state_from_metadata(session)}
    state = tuple(torch.from_numpy(feeds[n]) for n in info["inputs"][1:])
    worst = 0.0
    for _ in range(steps):
        with torch.no_grad():
            out = wrapper(torch.from_numpy(example["image"]), *state)
        got = session.run(info["outputs"], feeds)
        worst = max(worst, *(float(np.abs(e.numpy() - g).max()) for e, g in zip(out, got)))
        state = out[1:]  # each side carries its own state forward
        feeds = {"image": example["image"], **{n: g for n, g in zip(info["inputs"][1:], got[1:])}}
    return worst


def run_export(args) -> int:
    """`kbh export-model` handler."""
    from kbh.errors import KbhError
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt)
    height, width = args.size
    try:
        info = export_onnx(model, args.onnx, mode=args.mode, iterations=args.iterations, height=height, width=width)
    except (ValueError, RuntimeError) as e:
        raise KbhError(f"{args.checkpoint}: ONNX export failed: {str(e).splitlines()[0]}") from None
    session = ort_session(Path(args.onnx), threads=args.threads)
    diff = parity(info, session)
    what = (f"{info['metadata']['kbh_iterations']} iteration(s)" if args.mode == "all"
            else f"one step, state {', '.join(info['inputs'][1:]) or '(none)'}")
    print(f"wrote {args.onnx}: {model.config['name']}, {what}, input 1x3x{height}x{width}")
    print(f"parity with torch: max abs difference {diff:.3g} (tolerance {PARITY_TOLERANCE:g})")
    if not diff <= PARITY_TOLERANCE:
        raise KbhError(f"{args.onnx}: ONNX Runtime output differs from torch by {diff:.3g} > {PARITY_TOLERANCE:g}")
    return 0
