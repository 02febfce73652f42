"""Frame ranges as an artist types them (``1-250``, ``1,3,5-9``, ``10-100x10``) and their
chunks: one Slurm array task renders one chunk of consecutive frames."""

from __future__ import annotations

import re

from farmhand.errors import UsageError

MAX_FRAMES = 100_000
"""More frames than any job of this farm should hold: a typo (``1-1000000``) is refused."""

_PART = re.compile(r"([0-9]+)(?:-([0-9]+)(?:x([0-9]+))?)?")


def parse_frames(text: str) -> list[int]:
    """Frames of ``text``, sorted, each once; UsageError (one line) when it is not a range.

    Frames start at 1 (Blender allows 0, but a farm job of frame 0 is almost always a typo of
    an empty range); a range runs forwards (``5-1`` is refused, not reversed)."""
    spec = text.strip(" ")
    if not spec:
        raise UsageError("no frames given: say which, like --frames 1-250 or --frames 1,3,5-9")
    frames: set[int] = set()
    for part in spec.split(","):
        match = _PART.fullmatch(part.strip(" "))
        if match is None:
            raise UsageError(
                f"bad frame range {part.strip()!r} in {spec!r}: use FIRST-LAST, FIRST-LASTxSTEP "
                "or single frames, separated by commas (like 1-250 or 1,3,5-9)"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) is not None else 1
        if first < 1 or last < 1:
            raise UsageError(f"bad frame range {part.strip()!r}: frames start at 1")
        if last < first:
            raise UsageError(
                f"bad frame range {part.strip()!r}: it ends before it starts "
                f"(did you mean {last}-{first}?)"
            )
        if step < 1:
            raise UsageError(f"bad frame range {part.strip()!r}: the step must be at least 1")
        if (last - first) // step + 1 + len(frames) > MAX_FRAMES:
            raise UsageError(f"frame range {spec!r} has more than {MAX_FRAMES} frames")
        frames.update(range(first, last + 1, step))
    return sorted(frames)


def chunks(frames: list[int], size: int) -> list[list[int]]:
    """``frames`` in chunks of at most ``size`` (one task each); a chunk never spans a gap, so
    each is a plain ``first-last`` Blender can render with ``-s -e``."""
    if size < 1:
        raise UsageError(f"bad --chunk {size}: a chunk holds at least one frame")
    out: list[list[int]] = []
    for frame in frames:
        if out and len(out[-1]) < size and out[-1][-1] == frame - 1:
            out[-1].append(frame)
        else:
            out.append([frame])
    return out


def describe(frames: list[int]) -> str:
    """``1-5,8,10-12``: the short form of a sorted list of frames."""
    runs = chunks(frames, len(frames) or 1)
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
