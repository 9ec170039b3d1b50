"""`kbh train`: train a segmentation model on HDF5 shards, in one process or under torchrun (DDP).

Read bottom up, torchvision references/segmentation style: `train` (the main) checks the arguments
(`check_args`), builds data, model, optimizer and schedule (`build_context`), then calls `train_one_epoch` until
the budget is spent and `finish`es. An epoch runs `train_step` per batch (forward all iterations, weighted loss,
backward, clip, step), logs to log.jsonl, and every K steps `validate`s (confusion matrices all-reduced across
ranks) and saves last.pt / best.pt (rank 0).

Settings of the paper (Wang et al., ICCV 2019; docs/training.md): SGD momentum 0.9, loss sum_t alpha^(N-t) CE_t
with N = 3, random rotation +-10 degrees and horizontal flips, gradient-norm clipping at 10 (recurrent models).
The paper's alpha is 0.4; ours is 1 (measured: docs/training.md, "Iterations that refine").
Choices of ours: one polynomial LR decay (power 0.9, torchvision's segmentation reference) for every model, so
a fixed step budget is comparable across models; ImageNet normalisation, stored in the checkpoint.

--interactive (RITM, Sofiiuk et al. 2021; training/interactive.py): the model takes 3 + 3 input channels (image,
current mask, hand and background strokes). Per batch: initial strokes from the ground truth, then 0..--rounds
correction rounds without gradient (predict, add a stroke in each sample's largest error, feed the prediction
back), then the usual forward with gradient and loss. Validation replays the centre protocol for
--val-strokes strokes; "miou" (model selection) is the mIoU after 3 strokes.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from kbh.errors import KbhError
from kbh.atomic_file import write_error

from . import plots
from .checkpoint import load_checkpoint, plain_args, save_checkpoint, state_dict_digest
from .data import IMAGENET_MEAN, IMAGENET_STD, ShardDataset, SkipSampler, has_split, steps_per_epoch
from .evaluate import score_dataset
from .interactive import (EXTRA_CHANNELS, invert_colours, model_input, score_interactive, shuffle_colours,
                          simulate_rounds)
from .loss import recurrent_loss
from .metrics import REPORTED

# Settings taken from the checkpoint on --resume (the run continues as it was started); the others (paths,
# device, workers, logging cadence) may change between sessions. A larger --steps/--epochs extends a run.
RESUME_KEEPS_CLI = {"out", "data", "resume", "device", "workers", "eval_every", "save_every", "log_every",
                    "steps", "epochs", "command"}


def setup_distributed(device_arg: str | None):
    """(rank, world, device). Under torchrun (WORLD_SIZE set) join the process group: NCCL on GPUs, gloo on CPU."""
    want_cuda = device_arg == "cuda" or (device_arg is None and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise KbhError("--device cuda: no CUDA device available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if want_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        rank = dist.get_rank()
        device = torch.device(f"cuda:{local_rank}" if want_cuda else "cpu")
    else:
        rank, device = 0, torch.device("cuda" if want_cuda else "cpu")
    return rank, world, device


def sync_buffers(model, world: int) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): DDP broadcasts them before each forward,
    so after the last forward each rank holds its own update; rank 0's are the ones saved."""
    if world > 1:
        for b in model.buffers():
            dist.broadcast(b, src=0)


def merge_resume_args(args, saved: dict):
    """Take the run's settings from the checkpoint; say which CLI values are ignored."""
    ignored = []
    for k, v in saved.items():
        if k in RESUME_KEEPS_CLI:
            continue
        if hasattr(args, k) and getattr(args, k) != v and getattr(args, k) is not None:
            ignored.append(f"--{k.replace('_', '-')} {getattr(args, k)} (run has {v})")
        setattr(args, k, v)
    if args.steps is None and args.epochs is None:
        args.steps, args.epochs = saved.get("steps"), saved.get("epochs")
    return ignored


def append_log(path: Path, record: dict) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise (write_error(path, e) or KbhError(f"{path}: cannot write ({e.strerror})")) from None


def truncate_log(path: Path, step: int) -> None:
    """Drop records past `step` (written after the checkpoint a killed run left), so curves continue cleanly."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


@dataclass
class Context:
    """A run's parts and its progress (step, best mIoU); `train` builds it once, the steps below update it."""

    args: object
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: object
    device: torch.device
    rank: int
    world: int
    run: Path
    log_path: Path
    iterations: int
    alpha: float
    train_set: object
    val_set: object
    sampler: object
    per_epoch: int
    total: int
    checkpoint_extra: dict  # what every checkpoint records besides weights and progress
    bar: object = None
    step: int = 0
    best_miou: float = -1.0
    last_good: bool = False  # last.pt holds a checkpoint (what a stop on a non-finite loss keeps)
    t0: float = field(default_factory=time.time)

    @property
    def master(self) -> bool:
        return self.rank == 0

    def checkpoint_state(self, epoch: int) -> dict:
        return {"model_config": dict(self.model.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "epoch": epoch, "best_miou": self.best_miou, **self.checkpoint_extra}


def train_step(ctx: Context, batch: dict, step: int) -> tuple[float, list[float]]:
    """One optimizer step: the (interactive) input, the forward over all iterations, the weighted loss, backward,
    clip, step. Returns the loss (mean over ranks) and the loss per iteration; stops on a non-finite loss."""
    args, model = ctx.args, ctx.model
    model.train()
    x = batch["image"].to(ctx.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    y = batch["mask"].to(ctx.device, non_blocking=True)
    s0 = None
    if args.interactive:  # strokes and the fed-back mask of 0..R simulated rounds, no gradient
        rng = np.random.default_rng([args.seed, step, ctx.rank])
        rounds = int(rng.integers(0, args.rounds + 1))
        x = shuffle_colours(x, rng, args.colour_shuffle)
        norm = ctx.checkpoint_extra["normalization"]
        x = invert_colours(x, rng, getattr(args, "colour_invert", 0.0) or 0.0, norm["mean"], norm["std"])
        prev, enc = simulate_rounds(model, x, y, rng, rounds, args.stroke_radius, args.encoding, args.stroke_distance)
        x = model_input(x, prev, enc).contiguous(memory_format=torch.channels_last)
        s0 = prev if model.seedable else None
    iterations = ctx.iterations
    if args.random_iterations and model.recurrent:  # N drawn per step (same on every rank): anytime training
        iterations = int(np.random.default_rng([args.seed, step, 1]).integers(1, ctx.iterations + 1))
    outs = ctx.net(x, iterations=iterations, s0=s0, stop_mask_gradient=args.stop_mask_gradient)
    loss, per_iter = recurrent_loss(outs, y, alpha=ctx.alpha)
    mean_loss = loss.detach().clone()
    if ctx.world > 1:  # one decision for all ranks, and the logged loss is the global mean
        dist.all_reduce(mean_loss)
        mean_loss /= ctx.world
    if not torch.isfinite(mean_loss):
        ctx.bar.close()
        kept = f"last good checkpoint {ctx.run / 'last.pt'} kept" if ctx.last_good else "no checkpoint was saved yet"
        raise KbhError(f"loss is {mean_loss.item()} at step {step + 1} (lr {ctx.scheduler.get_last_lr()[0]:.3g}); "
                       f"stopping, {kept}. Try a lower --lr.")
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if model.recurrent:  # paper: clip recurrent models' gradients (norm 10)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    ctx.optimizer.step()
    ctx.scheduler.step()
    return mean_loss.item(), per_iter


def validate(ctx: Context, step: int, epoch: int) -> float:
    """Score the val split (all ranks), log it (rank 0) and return the mIoU that selects best.pt: after the last
    iteration, or, for an interactive model, after 3 simulated strokes."""
    args, model = ctx.args, ctx.model
    sync_buffers(model, ctx.world)
    if args.interactive:
        per_stroke, noc = score_interactive(model, ctx.val_set, args.val_strokes, ctx.device, args.stroke_radius,
                                            args.encoding, args.stroke_distance, batch=args.batch, rank=ctx.rank,
                                            world=ctx.world)
        miou = per_stroke[min(3, len(per_stroke)) - 1]["miou"]  # after 3 strokes
        if ctx.master:
            append_log(ctx.log_path, {"kind": "eval", "split": "val", "step": step, "epoch": epoch, "miou": miou,
                                      "noc90": noc, "per_iteration": [{k: r[k] for k in ("iteration", *REPORTED)}
                                                                      for r in per_stroke]})  # k = after k strokes
            ctx.bar.write(f"step {step}: val mIoU after 3 strokes {miou:.4f}, NoC@90 {noc:.2f} (strokes "
                          f"1..{len(per_stroke)}: " + ", ".join(f"{r['miou']:.3f}" for r in per_stroke) + ")")
        return miou
    per_iteration = score_dataset(model, ctx.val_set, ctx.iterations, ctx.device, batch=args.batch, rank=ctx.rank,
                                  world=ctx.world).results()
    miou = per_iteration[-1]["miou"]
    if ctx.master:
        summary = {k: per_iteration[-1][k] for k in REPORTED}
        append_log(ctx.log_path, {"kind": "eval", "split": "val", "step": step, "epoch": epoch, **summary,
                                  "per_iteration": [{k: r[k] for k in ("iteration", *REPORTED)}
                                                    for r in per_iteration]})
        ctx.bar.write(f"step {step}: val mIoU {miou:.4f} (t=1..{ctx.iterations}: "
                      + ", ".join(f"{r['miou']:.3f}" for r in per_iteration) + ")")
    return miou


def parse_model_args(pairs: list[str]) -> dict:
    """["init=zeros", "hidden=16"] -> {"init": "zeros", "hidden": 16}: constructor arguments (numbers as numbers)."""
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise KbhError(f"--model-arg {pair!r}: expected KEY=VALUE")
        for kind in (int, float):
            try:
                out[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def check_args(args, run: Path, master: bool = True) -> dict | None:
    """Validate the budget and settings; on --resume take the run's settings from last.pt (returned)."""
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(run / "last.pt", map_location="cpu")
        for note in merge_resume_args(args, ckpt["args"]):
            if master:
                print(f"kbh train: --resume ignores {note}")
    elif (run / "last.pt").exists():
        raise KbhError(f"{run}: already holds a run (last.pt); use --resume or another --out")
    if args.steps is None and args.epochs is None:
        raise KbhError("give a budget: --steps N or --epochs N")
    if args.interactive and args.rounds < 0:
        raise KbhError(f"--rounds {args.rounds}: must be at least 0")
    for name in ("steps", "epochs", "batch", "iterations", "save_every", "log_every", "val_strokes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise KbhError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    for name in ("paste", "colour_shuffle", "colour_invert"):  # probabilities (the last two: --interactive only)
        value = getattr(args, name, 0.0) or 0.0
        if not 0.0 <= value <= 1.0:
            raise KbhError(f"--{name.replace('_', '-')} {value}: must be a probability in [0, 1]")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise KbhError(f"--lr {args.lr}: must be a positive number")
    return ckpt


def build_context(args, ckpt: dict | None, run: Path, rank: int, world: int, device) -> Context:
    """Data, model (fresh, or rebuilt from last.pt's config), optimizer and schedule, in that order."""
    torch.manual_seed(args.seed)
    # -- data
    mean, std = (ckpt["normalization"]["mean"], ckpt["normalization"]["std"]) if ckpt else (IMAGENET_MEAN, IMAGENET_STD)
    train_set = ShardDataset(args.data, "train", augment=True, mean=mean, std=std,
                             crop=getattr(args, "crop", None), paste=getattr(args, "paste", 0.0) or 0.0)
    val_set = ShardDataset(args.data, "val", mean=mean, std=std) if has_split(args.data, "val") else None
    if ckpt and ckpt.get("manifest_id") and ckpt["manifest_id"] != train_set.manifest_id:
        raise KbhError(f"{args.data}: shards of manifest {train_set.manifest_id}, but the run was trained on "
                       f"{ckpt['manifest_id']}")
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    per_epoch = steps_per_epoch(len(train_set), args.batch, world)
    total = args.steps if args.steps is not None else args.epochs * per_epoch

    # -- model
    from training.models import build_model

    try:
        extra = {"in_channels": 3 + EXTRA_CHANNELS} if args.interactive else {}
        extra.update(parse_model_args(args.model_arg or []))
        model = build_model(**ckpt["model_config"]) if ckpt else build_model(args.model, **extra)
    except ValueError as e:
        raise KbhError(str(e)) from None
    if ckpt:
        model.load_state_dict(ckpt["model"])
    # channels_last: oneDNN's fast path for these small convolutions (~25% per step on 2 CPU cores)
    model.to(device, memory_format=torch.channels_last)
    # A model may ask for the loss on its last output only (McIntosh et al.'s canvas): alpha = 0 gives weights
    # 0, ..., 0, 1 (0^0 = 1).
    alpha = 0.0 if getattr(model, "final_loss_only", False) else args.alpha
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # -- optimizer, schedule: polynomial decay to 0 at the end of the budget (recomputed from the step, so
    # extending a run works)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total) ** 0.9)

    extra = {"manifest_id": train_set.manifest_id, "normalization": {"mean": list(mean), "std": list(std)},
             "args": plain_args(args),
             "input_size": list(train_set.raw(0)["mask"].shape)}  # (H, W): `kbh predict` resizes frames to it
    if args.interactive:  # what the engine needs to rebuild the input (training/interactive_engine.py)
        extra["interactive"] = {"encoding": args.encoding, "radius": args.stroke_radius,
                                "distance": args.stroke_distance, "rounds": args.rounds,
                                "extra_channels": EXTRA_CHANNELS,
                                "channels": ["rgb", "mask", "hand strokes", "background strokes"]}
    ctx = Context(args, model, net, optimizer, scheduler, device, rank, world, run, run / "log.jsonl",
                  model.iterations_to_run(args.iterations), alpha, train_set, val_set, sampler, per_epoch, total,
                  extra, last_good=(run / "last.pt").exists())
    if ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        ctx.step, ctx.best_miou = int(ckpt["step"]), float(ckpt["best_miou"])
        if ctx.master:
            truncate_log(ctx.log_path, ctx.step)
    return ctx


def train_one_epoch(ctx: Context) -> None:
    """The rest of the current epoch (a resumed run starts part-way, at the same sample order), or up to the
    budget: step, log, and at the chosen steps validate and save checkpoints."""
    args = ctx.args
    epoch = ctx.step // ctx.per_epoch
    ctx.sampler.set_epoch(epoch)
    loader = DataLoader(ctx.train_set, batch_size=args.batch,
                        sampler=SkipSampler(ctx.sampler, (ctx.step % ctx.per_epoch) * args.batch),
                        num_workers=args.workers, pin_memory=ctx.device.type == "cuda",
                        generator=torch.Generator().manual_seed(args.seed * 1_000_003 + ctx.step))  # workers by step
    for batch in loader:
        mean_loss, per_iter = train_step(ctx, batch, ctx.step)
        ctx.step += 1
        lr = ctx.scheduler.get_last_lr()[0]
        ctx.bar.update(1)
        ctx.bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2g}")
        if ctx.master and (ctx.step % args.log_every == 0 or ctx.step == ctx.total):
            append_log(ctx.log_path, {"kind": "train", "step": ctx.step, "epoch": epoch, "loss": mean_loss,
                                      "loss_per_iteration": per_iter, "lr": lr,
                                      "elapsed_s": round(time.time() - ctx.t0, 2)})
        evaluated = ctx.val_set is not None and ((args.eval_every and ctx.step % args.eval_every == 0)
                                                 or ctx.step == ctx.total)
        if evaluated:
            miou = validate(ctx, ctx.step, epoch)
            if ctx.master and miou > ctx.best_miou:
                ctx.best_miou = miou
                save_checkpoint(ctx.run / "best.pt", ctx.checkpoint_state(epoch))
            ctx.best_miou = max(ctx.best_miou, miou)
        if ctx.master and (ctx.step % args.save_every == 0 or ctx.step == ctx.total or evaluated):
            save_checkpoint(ctx.run / "last.pt", ctx.checkpoint_state(epoch))
            ctx.last_good = True
            if evaluated or ctx.step == ctx.total:
                plots.plot_run(ctx.run)
        if ctx.step >= ctx.total:
            return


def finish(ctx: Context) -> None:
    """best.pt without a val split, and the check that every rank ended with the same weights."""
    if ctx.master and ctx.val_set is None:  # nothing to select on: the final weights are the best we know
        print("kbh train: no 'val' shards: best.pt is the final model")
        save_checkpoint(ctx.run / "best.pt", ctx.checkpoint_state(ctx.step // ctx.per_epoch))
    sync_buffers(ctx.model, ctx.world)
    digest = state_dict_digest(ctx.model)
    if ctx.world > 1:
        print(f"rank {ctx.rank}/{ctx.world}: weights sha256 {digest}", flush=True)
        digests = [None] * ctx.world
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise KbhError(f"ranks ended with different weights: {digests}")


def train(args) -> int:
    """`kbh train`: set up, train epoch by epoch to the budget, finish."""
    from tqdm import tqdm

    rank, world, device = setup_distributed(args.device)
    run = Path(args.out)
    try:
        ckpt = check_args(args, run, master=rank == 0)
        run.mkdir(parents=True, exist_ok=True)
        ctx = build_context(args, ckpt, run, rank, world, device)
        if ctx.master:
            print(f"kbh train: {ctx.model.config['name']} on {len(ctx.train_set)} frames ({ctx.per_epoch} "
                  f"steps/epoch, {world} process{'es' if world > 1 else ''}, {device}), steps {ctx.step} -> "
                  f"{ctx.total}", flush=True)
        ctx.bar = tqdm(total=ctx.total, initial=ctx.step, disable=not ctx.master, unit="step", dynamic_ncols=True,
                       desc="train")
        while ctx.step < ctx.total:
            train_one_epoch(ctx)
        ctx.bar.close()
        finish(ctx)
        if ctx.master:
            print(f"kbh train: done, {ctx.step} steps in {time.time() - ctx.t0:.1f}s; best val mIoU "
                  f"{ctx.best_miou if ctx.best_miou >= 0 else float('nan'):.4f}; checkpoints in {run}", flush=True)
        return 0
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
