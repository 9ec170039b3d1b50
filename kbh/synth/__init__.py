"""Synthetic keyboard scenes with exact hand masks: the demo data, and test data when ../shared/data is absent.

A scene is a desk (colour and texture per sequence), a keyboard seen from above the user's shoulders (dark or
light body, a grid of shaded keys with legends, slight perspective), sometimes objects on the desk (mug, phone,
paper, pen, sticky note: background), lighting (brightness, colour cast, a soft gradient and vignette) and one or
two hands with forearms entering from the bottom edge. A hand is a palm polygon, a two-segment thumb and four
three-segment fingers whose knuckles flex (a flexed segment is foreshortened, as seen from above), on a forearm
trapezoid; skin tone per person, shading towards the outline, mild texture, nails at the finger tips.

What counts as hand (mask 1): skin of hand and forearm, nails (polished or not) and tattoos. What does not
(mask 0): watch, bracelet, rings and sleeves; they are drawn over the skin and cleared from the mask.

Exactness: the hand and the accessories are drawn without anti-aliasing (cv2.LINE_8, sub-pixel coordinates) at
the output resolution, and the image's hand pixels are exactly the mask's; the camera blur and sensor noise added
afterwards soften the image only. The static background (desk, keyboard, objects) is rendered at 2x and
downsampled once per sequence.

Motion: every pose parameter (wrist position, hand angle, wrist bend, finger spread and flexion) is a sum of a
few slow sinusoids with random periods and phases, so consecutive frames differ by a pixel or two and the
previous frame's mask is a good start for the next.

Persons and sequences: `person_attributes(rng)` / `sequence_attributes(rng)` draw the attribute strings of the
KBH table (kbh.workspace.PERSON_ATTRIBUTES / SEQUENCE_ATTRIBUTES); the rendering follows them (skin tone bucket,
watch, ...). The exact tone inside its bucket, hand size and proportions are drawn per sequence, which also
changes camera and desk, so a person is recognisable by tone bucket and accessories, not pixel-identical.

Determinism: `synthesize_workspace(seed=S)` draws person p from np.random.default_rng([S, p]) and its sequence s
from seeds derived from [S, p, s], so a person does not depend on how many persons were asked for; the same
seed gives identical bytes.

Unlabeled workspaces: `synthesize_workspace(labeled=False)` leaves frames `unlabeled` but keeps the exact mask
as `WS/ground_truth/<frame id>.png` (0 background / 255 hand, frame id = the workspace's integer id), so a
simulated annotator can score itself against the truth.
"""

from __future__ import annotations

from .attributes import (DESK_POSITIONS, DESKS, KEYBOARDS, LIGHTINGS, SKIN_TONES, person_attributes,
                         sequence_attributes)
from .render import MIN_SIDE, check_request, render_sequence
from .writer import sequence_seed, synthesize_workspace

__all__ = ["DESK_POSITIONS", "DESKS", "KEYBOARDS", "LIGHTINGS", "SKIN_TONES", "MIN_SIDE", "check_request",
           "person_attributes", "render_sequence", "sequence_attributes", "sequence_seed", "synthesize_workspace"]
