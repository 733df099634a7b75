#!/usr/bin/env python3
"""Writes the PyTorch golden files of tests/test_torch_import.cpp (run once, with Debian's
python3-torch and python3-torchvision; the test itself needs no Python):

  resnet18.pth.gz          torch.save(torchvision.models.resnet18().state_dict()), gzip'd
  resnet18.safetensors.gz  the same state dict as safetensors (F32), gzip'd
  resnet18_golden.safetensors  an input batch (2, 3, 64, 96) and torchvision's logits for it (eval)
  dtypes_checkpoint.pth    a training checkpoint with f16, bf16, f64, int64 and strided tensors
  pil_decode.jpg, .ppm     a JPEG and PIL's decode of it (the standard decoders' pixels)

The weights are random but compress well: each convolution and linear weight is a random block of
1021 values (a prime, so that no layout of the weights lines up with it; He-scaled) repeated to
the tensor's size. BatchNorm parameters and running statistics are random too, so every tensor's
loading, and the order of its elements, matters to the logits.
"""
import gzip
import json
import os
import struct

import numpy as np
import torch
import torchvision

out = os.path.dirname(os.path.abspath(__file__))
g = torch.Generator().manual_seed(2026)
model = torchvision.models.resnet18()
sd = model.state_dict()
for name, t in sd.items():
    if name.endswith("num_batches_tracked"):
        t.fill_(17)
    elif t.dim() >= 2:  # conv and linear weights
        block = torch.randn(1021, generator=g) * (2.0 / t[0].numel()) ** 0.5
        t.copy_(block.repeat(t.numel() // 1021 + 1)[: t.numel()].view(t.shape))
    elif name.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
    elif name.endswith("running_mean") or name.endswith("bias"):
        t.copy_(0.1 * torch.randn(t.shape, generator=g))
    else:  # BatchNorm weight
        t.copy_(0.75 + 0.5 * torch.rand(t.shape, generator=g))
model.load_state_dict(sd)
model.eval()


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        a = t.detach().contiguous().numpy()
        dtype = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
        b = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


pth = os.path.join(out, "resnet18.pth")
torch.save(model.state_dict(), pth)
with open(pth, "rb") as f, gzip.GzipFile(pth + ".gz", "wb", compresslevel=9, mtime=0) as z:
    z.write(f.read())
os.remove(pth)
with gzip.GzipFile(os.path.join(out, "resnet18.safetensors.gz"), "wb", compresslevel=9, mtime=0) as z:
    z.write(write_safetensors(None, model.state_dict()))

x = torch.randn((2, 3, 64, 96), generator=g)
with torch.no_grad():
    logits = model(x)
with open(os.path.join(out, "resnet18_golden.safetensors"), "wb") as f:
    f.write(write_safetensors(None, {"input": x, "logits": logits},
                              {"torch": torch.__version__, "torchvision": torchvision.__version__}))
print("torch", torch.__version__, "torchvision", torchvision.__version__, "logits[0,:4]", logits[0, :4].tolist())

# A training checkpoint as scripts save them (the state dict nested, other objects around it),
# holding the element types and layouts the reader converts: f16, bf16, f64, int64, a transposed
# (non-contiguous) view and a view with a storage offset.
import argparse
import collections

base = torch.arange(24, dtype=torch.float32).view(4, 6) / 8 - 1
sd2 = collections.OrderedDict()
sd2["a.f16"] = base.half()
sd2["a.bf16"] = base.bfloat16()
sd2["a.f64"] = base.double()
sd2["a.i64"] = torch.arange(5, dtype=torch.int64) - 2
sd2["a.transposed"] = base.t()
sd2["a.offset"] = base.view(-1)[5:11]
sd2["a.scalar"] = torch.tensor(3.5)
torch.save({"epoch": 3, "args": argparse.Namespace(lr=0.1, name="x"), "state_dict": sd2,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}, os.path.join(out, "dtypes_checkpoint.pth"))

# The pixels of the standard decoders: a JPEG (4:2:0, odd size) and PIL's decode of it, which
# dermis's standard decode (evaluate and predict's default) must reproduce exactly.
from PIL import Image

yy, xx = np.mgrid[0:61, 0:83]
rgb = np.stack([128 + 100 * np.sin(xx / 5.0), 128 + 90 * np.cos(yy / 4.0 + xx / 9.0), (xx * 3 + yy * 2) % 256], -1)
Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(os.path.join(out, "pil_decode.jpg"), quality=90, subsampling=2)
Image.open(os.path.join(out, "pil_decode.jpg")).convert("RGB").save(os.path.join(out, "pil_decode.ppm"))
