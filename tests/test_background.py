"""Median backgrounds: the per-pixel median, leaving out where the person is, found without labels."""
import numpy as np
import pytest

from h36m_prep.background import median_background, plurality_background


def test_median_leaves_out_the_person_and_falls_back_where_always_covered():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (70, 40, 3), dtype=np.uint8) for _ in range(9)]
    person = [rng.uniform(size=(70, 40)) < 0.5 for _ in range(9)]
    person[0][:] = True
    for p in person[1:]:
        p[5, 5] = True  # covered in every sample
    got = median_background(frames, person)
    stack = np.stack(frames).astype(float)
    for y, x in [(0, 0), (10, 20), (69, 39), (33, 7)]:
        keep = ~np.stack(person)[:, y, x]
        np.testing.assert_array_equal(got[y, x], np.round(np.median(stack[keep, y, x], axis=0)))
    np.testing.assert_array_equal(got[5, 5], np.round(np.median(stack[:, 5, 5], axis=0)))
    # without person regions it is the plain median
    np.testing.assert_array_equal(median_background(frames), np.round(np.median(stack, axis=0)))


def _room_and_person(still: int, seed: int = 0):
    """12 samples of a textured room; a person (textured, unlike the room) stands at one place,
    moving a little, in the first `still` of them and is elsewhere in the rest."""
    rng = np.random.default_rng(seed)
    room = rng.integers(40, 200, (60, 80, 3)).astype(np.int16)
    frames = []
    for k in range(12):
        f = room + rng.integers(-2, 3, room.shape)
        y, x = (20 + k % 2, 30 + k % 3) if k < still else (rng.integers(0, 45), rng.integers(0, 65))
        f[y:y + 15, x:x + 15] = 200 + rng.integers(0, 50, (15, 15, 3))
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return room, frames


def test_the_label_free_background_recovers_the_room_where_the_person_stands_most_of_the_time():
    """A person stands at one place in 7 of 12 samples, moving a little (walks elsewhere in the
    rest): the plain median shows the person there (a ghost); the plurality vote recovers the
    room. No pose is used."""
    room, frames = _room_and_person(still=7)
    plain = median_background(frames).astype(int)
    clean = plurality_background(frames, tolerance=8).astype(int)
    spot = (slice(22, 35), slice(33, 45))  # covered in all 7
    assert np.abs(clean[spot] - room[spot]).max() <= 3
    assert np.abs(plain[spot] - room[spot]).mean() > 20  # the ghost
    assert np.abs(clean - room).max() <= 3


@pytest.mark.parametrize("vote_scale", [2, 3])
def test_a_vote_on_shrunk_samples_recovers_the_room_where_the_person_does_not_stay(vote_scale):
    """The vote run on the samples shrunk (3: blocks cut by the frame's edge), the median at full
    size: the room, where the person stays in a quarter of the samples. Where the
    person stays in most of them, the shrunk vote keeps the ghost: averaged over blocks, the
    person's fine texture no longer tells the still samples apart, so they win (which is why
    --bg-vote-scale defaults to 1)."""
    room, frames = _room_and_person(still=3)
    assert np.abs(plurality_background(frames, 8, vote_scale).astype(int) - room).max() <= 3
    room, frames = _room_and_person(still=7)
    spot = (slice(22, 35), slice(33, 45))
    assert np.abs(plurality_background(frames, 8, vote_scale)[spot].astype(int) - room[spot]).max() > 20


def test_the_compiled_vote_equals_the_vote_written_out_over_every_pair_of_samples():
    """The rewritten vote (pixel-major rows, each pair compared once, the median counted) picks the
    same sample and the same median as the plain vote over all ordered pairs, ties included (first
    sample wins), even and odd numbers of agreeing samples alike."""
    from h36m_prep.background import plurality_background, plurality_reference

    rng = np.random.default_rng(4)
    for n, tolerance in ((7, 8), (48, 8), (10, 0), (9, 40)):
        room = rng.integers(0, 256, (21, 19, 3), dtype=np.uint8)
        stack = np.stack([np.clip(room.astype(int) + rng.integers(-6, 7, room.shape), 0, 255).astype(np.uint8)
                          if rng.random() < 0.5 else rng.integers(0, 256, room.shape, dtype=np.uint8)
                          for _ in range(n)])
        stack[:, :3] = stack[0, :3]  # rows where every sample agrees
        stack[1::2, 3:5] = 255 - stack[0::2, 3:5][: len(stack[1::2])]  # two equal camps: the tie goes to the first
        assert np.array_equal(plurality_background(list(stack), tolerance), plurality_reference(stack, tolerance))


def test_the_samples_decoded_in_one_forward_pass_are_the_frames_a_seek_to_each_gives(small_raw, monkeypatch):
    """sample_frames reaches near picks by decoding forward and far ones by seeking: the same
    frames, at the same indices, as seeking to every pick."""
    from h36m_prep import background as B
    from h36m_prep.raw import video_info

    videos = [(v, video_info(v).frames) for v in sorted(small_raw.glob("S1/Videos/*.54138969.mp4"))]
    for samples in (5, 24):  # picks about 24 frames apart (seeks), 4 apart (forward)
        monkeypatch.setattr(B, "SEEK_GAP", 10)  # these 48-frame videos are shorter than the gap used on real ones
        forward = B.sample_frames(videos, samples)
        monkeypatch.setattr(B, "SEEK_GAP", -1)  # every pick by a seek
        seeks = B.sample_frames(videos, samples)
        assert [s[:2] for s in forward] == [s[:2] for s in seeks] and len(seeks) == samples
        assert all(np.array_equal(a[2], b[2]) for a, b in zip(forward, seeks))
