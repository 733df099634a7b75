#!/usr/bin/python3
"""Writes tests/golden/cbam_torch.safetensors: a reference CBAM written in PyTorch (the semantics of
the official Jongchan/attention-module MODELS/cbam.py), its output and every gradient, for dermis's
parity test. Run with Debian's python3-torch:  /usr/bin/python3 tests/make_cbam_golden.py

Inputs are formulas both sides compute (x_i = 2 sin(0.37 i + 0.1), loss = sum(out * r) with
r_i = cos(0.11 i)); weights are random and stored. The reference runs in float64 so the golden values
are exact to float32 precision. The metadata also records the parameter counts of the PyTorch peer
model in ../shared/peers/torch_cbam_bench.py (7 classes), which dermis's models must match.
"""
import json, math, os, struct, sys
import torch, torch.nn as nn, torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


class ChannelGate(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, max(c // r, 1)), nn.ReLU(), nn.Linear(max(c // r, 1), c))

    def forward(self, x):
        avg = F.avg_pool2d(x, (x.size(2), x.size(3)))
        mx = F.max_pool2d(x, (x.size(2), x.size(3)))
        return x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))[:, :, None, None]


class SpatialGate(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x):
        s = torch.cat([torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)], 1)
        return x * torch.sigmoid(self.bn(self.conv(s)))


class CBAM(nn.Module):
    def __init__(self, c, r, k, channel_only):
        super().__init__()
        self.ChannelGate = ChannelGate(c, r)
        self.SpatialGate = None if channel_only else SpatialGate(k)

    def forward(self, x):
        x = self.ChannelGate(x)
        return x if self.SpatialGate is None else self.SpatialGate(x)


def formula(n, f):
    return torch.tensor([f(i) for i in range(n)], dtype=torch.float64)


def case(name, shape, r, k, channel_only, out):
    n = math.prod(shape)
    m = CBAM(shape[1], r, k, channel_only).double().train()
    if m.SpatialGate is not None:
        with torch.no_grad():  # a non-trivial spatial gate (the model zoo initialises gamma to 0)
            m.SpatialGate.bn.weight.fill_(0.8)
            m.SpatialGate.bn.bias.fill_(-0.1)
    x = formula(n, lambda i: 2.0 * math.sin(0.37 * i + 0.1)).reshape(shape).requires_grad_()
    proj = formula(n, lambda i: math.cos(0.11 * i)).reshape(shape)
    y = m(x)
    (y * proj).sum().backward()
    out[f"{name}.out"] = y.detach()
    out[f"{name}.grad.x"] = x.grad
    for pname, p in m.named_parameters():
        out[f"{name}.param.{pname}"] = p.detach()
        out[f"{name}.grad.{pname}"] = p.grad
    for bname, b in m.named_buffers():
        if b.dtype.is_floating_point:
            out[f"{name}.buffer.{bname}"] = b.detach()
    return {"shape": list(shape), "reduction": r, "kernel": k, "channel_only": channel_only}


def peer_counts():
    sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "peers"))
    import torch_cbam_bench as peer
    count = lambda m: sum(p.numel() for p in m.parameters())
    return count(peer.ResNet18CBAM(classes=7, cbam=True)), count(peer.ResNet18CBAM(classes=7, cbam=False))


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k, t in tensors.items():
        b = t.to(torch.float32).contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(path + ".tmp", path)


def main():
    torch.manual_seed(0)
    tensors, cases = {}, {}
    cases["a"] = case("a", (2, 32, 4, 5), 16, 7, False, tensors)
    cases["b"] = case("b", (2, 20, 3, 4), 4, 3, False, tensors)
    cases["c"] = case("c", (3, 16, 2, 3), 8, 7, True, tensors)
    with_cbam, without = peer_counts()
    meta = {"cases": json.dumps(cases), "torch_version": torch.__version__,
            "peer_resnet18_cbam_params": str(with_cbam), "peer_resnet18_params": str(without)}
    path = os.path.join(HERE, "golden", "cbam_torch.safetensors")
    write_safetensors(path, tensors, meta)
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes; "
          f"peer resnet18_cbam {with_cbam} params, resnet18 {without}")


if __name__ == "__main__":
    main()
