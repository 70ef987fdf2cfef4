"""The throwaway loop used to choose mfsr_emoji's settings (train and val splits only).

A plain loop over unique images (one random caption each; an "epoch" here is one pass
over the 1,490 training images, 62 steps at batch 24), the model and losses of
retrievalkit, validation rsum after each epoch, reconstructions of 8 val pairs at
the end. Measured with it (at commit 24a5bbc, which is not on main; output not kept; the
adversary call since updated to the current signature):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mfsr_explore.py --epochs 6 --sh 2 --terms ""
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mfsr_explore.py --epochs 6 --sh 2
(val rsum of the VSE-only run 64.4, 75.6 in the SH epochs, 27.8 after the switch to MH,
MH loss 9.6 = 2 x 24 x 0.2; the full run 53.8, 72.4, then 37.1). Use the trainer for
anything reported. The per-epoch log is written to ``--results`` with a provenance header.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from retrievalkit.data import Vocabulary, load_dataset
from retrievalkit.data.transforms import build_transform
from retrievalkit.eval.cross_modal import cross_modal_recall
from retrievalkit.losses import (
    CaptionReconstructionLoss,
    ImageReconstructionLoss,
    ModalityLoss,
    SpecificLoss,
    VSELoss,
)
from retrievalkit.models import build_image_encoder, build_text_encoder
from retrievalkit.models.mfsr import MFSRModel
from retrievalkit.pipeline.embed import embed_captions, embed_images
from retrievalkit.run.provenance import write_results
from retrievalkit.training.reconstructions import save_reconstructions

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--sh", type=int, default=2)
p.add_argument("--batch", type=int, default=24)
p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--terms", default="mo,sp,img,cap")
p.add_argument("--gsize", type=int, default=32)
p.add_argument("--gbase", type=int, default=16)
p.add_argument("--pix", type=float, default=0.0)
p.add_argument("--wimg", type=float, default=1.0)
p.add_argument("--wcap", type=float, default=1.0)
p.add_argument("--wmo", type=float, default=1.0)
p.add_argument("--wsp", type=float, default=1.0)
p.add_argument("--joint", type=int, default=512)
p.add_argument("--part", type=int, default=512)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="/tmp/mfsr/run", help="reconstructions go here")
p.add_argument(
    "--results",
    type=Path,
    default=Path("results/emoji/mfsr_explore.json"),
    help="per-epoch val rsum and losses, under a provenance header (default: %(default)s)",
)
p.add_argument("--gscale", type=float, default=1.0)
p.add_argument("--steps", type=int, default=0)
a = p.parse_args()
terms = set(a.terms.split(",")) if a.terms else set()
torch.manual_seed(a.seed)
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)
s = load_dataset("emoji", size=64)
tr, va = s["train"], s["val"]
vocab = Vocabulary.build(tr.captions)
ttr = build_transform("image", 64, train=True)
tev = build_transform("image", 64, train=False)
model = MFSRModel(
    build_image_encoder("small_cnn", widths=(24, 48, 96, 192), out_dim=512),
    build_text_encoder("gru", vocab=vocab, word_dim=300, hidden_dim=a.joint),
    joint_dim=a.joint,
    part_dim=a.part,
    image_head="mlp",
    text_head="identity",
    generator={"size": a.gsize, "base_channels": a.gbase} if "img" in terms else None,
    decoder={"word_dim": 300, "hidden_dim": 512} if "cap" in terms else None,
    vocab=vocab,
    recon_grad_scale=a.gscale,
)
sh, mh = VSELoss(0.2, False), VSELoss(0.2, True)
L = {
    "mo": (a.wmo, ModalityLoss(), ("image.mo", "text.mo")),
    "sp": (a.wsp, SpecificLoss(), ("image.se", "image.sp", "text.se", "text.sp")),
    "cap": (a.wcap, CaptionReconstructionLoss(), ("decoder.logits", "decoder.targets")),
}
il = ImageReconstructionLoss(a.gsize, 3, a.gbase, pixel_weight=a.pix) if "img" in terms else None
opt = torch.optim.Adam(model.parameters(), a.lr)
adv = torch.optim.Adam(il.parameters(), 2e-4, betas=(0.5, 0.999)) if il else None
cap_img = np.asarray(tr.caption_image)
by_img = [np.flatnonzero(cap_img == i) for i in range(len(tr.images))]


def evaluate():
    model.eval()
    with torch.no_grad():
        img = embed_images(model.encode_image, va.images, tev, torch.device("cpu"))
        txt = embed_captions(model.encode_text, va.captions)
    model.train()
    return cross_modal_recall(img, txt, torch.as_tensor(va.caption_image))


g = np.random.default_rng(a.seed)
t0 = time.time()
step = 0
log = []
for ep in range(a.epochs):
    order = g.permutation(len(tr.images))
    vse = sh if ep < a.sh else mh
    agg = {}
    for b in range(0, len(order) - a.batch + 1, a.batch):
        idx = order[b : b + a.batch]
        caps = [tr.captions[g.choice(by_img[i])] for i in idx]
        x = torch.stack([ttr(tr.images.load(int(i))) for i in idx])
        ids = torch.as_tensor(idx)
        o = model(x, caps)
        parts = {}
        if il:
            adv.zero_grad()
            d = il.adversary_loss((o["recon.image"].detach(), o["recon.target"]), ids)
            d.backward()
            adv.step()
            parts["D"] = float(d)
            parts.update(il.health.as_dict())
        tot = vse(o["image.se"], o["text.se"])
        parts["vse"] = float(tot)
        for k, (w, term, ks) in L.items():
            if k in terms:
                v = term(*(o[n] for n in ks))
                parts[k] = float(v)
                tot = tot + w * v
        if il:
            v = il(o["recon.image"], o["recon.target"])
            parts["img"] = float(v)
            tot = tot + a.wimg * v
        opt.zero_grad()
        tot.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        step += 1
        for k, v in parts.items():
            agg.setdefault(k, []).append(v)
        if a.steps and step >= a.steps:
            break
    r = evaluate()
    log.append(
        {"epoch": ep, "rsum": r["rsum"], **{k: round(float(np.mean(v)), 3) for k, v in agg.items()}}
    )
    print(json.dumps(log[-1]), f"{time.time() - t0:.0f}s", flush=True)
    if a.steps and step >= a.steps:
        break
pick = list(range(0, len(va.images), len(va.images) // 8))[:8]
capfirst = [va.captions[int(np.flatnonzero(np.asarray(va.caption_image) == i)[0])] for i in pick]
if il or "cap" in terms:
    save_reconstructions(
        model,
        torch.stack([tev(va.images.load(i)) for i in pick]),
        capfirst,
        [va.image_keys[i] for i in pick],
        out,
    )
write_results(
    a.results, {"settings": vars(a) | {"results": str(a.results)}, "epochs": log}, seeds=[a.seed]
)
print("done", f"{time.time() - t0:.0f}s", f"log written to {a.results}")
