"""The synthetic frame generator: deterministic, well-formed, faithful to its arguments."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hardware.qr import open_raw_decoder, synth


@pytest.mark.parametrize("kind", synth.KINDS)
def test_frames_are_640x480_uint8_and_deterministic(kind):
    a, b = synth.render(kind, 5), synth.render(kind, 5)
    assert a.image.shape == (480, 640)
    assert a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image)
    assert a.payloads == b.payloads
    assert a.kind == kind and a.seed == 5
    assert not np.array_equal(a.image, synth.render(kind, 6).image)


def test_payload_and_corner_counts_follow_the_kind():
    assert synth.render("none", 0).payloads == ()
    assert synth.render("none", 0).corners == ()
    assert len(synth.render("paper", 0).payloads) == 1
    two = synth.render("two", 0)
    assert len(two.payloads) == 2 and len(two.corners) == 2
    # Listed left to right, like the decoders' order.
    assert np.mean(two.corners[0], axis=0)[0] < np.mean(two.corners[1], axis=0)[0]


@pytest.mark.parametrize("kind", [k for k in synth.KINDS if k != "none"])
def test_codes_lie_inside_the_frame(kind):
    for seed in range(6):
        for quad in synth.render(kind, seed).corners:
            pts = np.asarray(quad)
            assert pts.min() >= 0
            assert pts[:, 0].max() < 640 and pts[:, 1].max() < 480


def test_given_payloads_are_encoded():
    frame = synth.render("paper", 2, payloads=["PT1:HELLO WORLD"])
    assert frame.payloads == ("PT1:HELLO WORLD",)
    assert [c.text for c in open_raw_decoder("zxing").decode(frame.image)] == ["PT1:HELLO WORLD"]


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="kind"):
        synth.render("hologram", 0)
    with pytest.raises(ValueError, match="payloads"):
        synth.render("two", 0, payloads=["only one"])


def test_hard_set_mixes_every_kind_reproducibly():
    frames = synth.hard_set(40, seed=3)
    assert len(frames) == 40
    assert set(Counter(f.kind for f in frames)) == set(synth.KINDS)
    again = synth.hard_set(40, seed=3)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))
    # Frame i can be rebuilt alone from its seed.
    f = frames[17]
    assert np.array_equal(synth.render(f.kind, f.seed).image, f.image)
