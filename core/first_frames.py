"""First frames for image-to-video: requests of a prompt dataset given seeded synthetic images.

The paper's image-to-video workload pairs ShareGPT4Video captions with their first frames; those
cannot be fetched here, so an image-to-video profile takes prompts from any prompt dataset
(PartiPrompts, a JSONL, ...) and, with ``[dataset] first_frames = "synthetic"``, gives every
request without images one seeded synthetic image (:func:`.image_sets.synthetic_refs`), labelled
as synthetic in the run's log. The size is the sweep's first resolution (the runtime renders each
image at the configuration's own resolution, so one workload serves a resolution sweep), else
SVD-XT's 1024x576. Requests that already carry images (a JSONL with image paths) keep them.
"""

from __future__ import annotations

import msgspec

from .dataset_types import Request
from .image_sets import synthetic_refs
from .profile import Profile, _parse_resolution

#: SVD-XT's default frame size, used when the sweep fixes no resolution.
DEFAULT_SIZE = (1024, 576)
#: How records and logs name the synthetic first frames.
SOURCE = "synthetic first frames (seeded; ShareGPT4Video frames are not fetchable here)"


def attach_first_frames(profile: Profile, requests: list[Request]) -> list[Request]:
    """``requests`` with one synthetic first frame each where the profile asks for them."""
    if profile.task != "image-to-video" or profile.dataset.first_frames != "synthetic":
        return requests
    res = profile.sweep.resolutions()
    size = _parse_resolution(res[0]) if res else None
    refs = synthetic_refs(len(requests), profile.dataset.seed, size or DEFAULT_SIZE)
    return [r if r.images else msgspec.structs.replace(r, images=[ref]) for r, ref in zip(requests, refs)]
