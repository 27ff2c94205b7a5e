"""Fuse an infrared and a visible video (or folders of numbered frames) into one, streamed, and measure how
steady it is from frame to frame.

The pieces: sources (open a video or a frame folder, decode frames in order), matching (which infrared frame
goes with which visible frame: rates, lengths, offset, trim), sinks (a video file or a PNG folder, written
under a temporary name, a playable partial on Ctrl-C), smoothing (the optional stabiliser), pipeline
(open_video, fuse_video: reader, forward and writer threads), evaluate (the temporal measures of a fused video
against its sources), results (the report types). The measures themselves are swinfuse.metrics.temporal.
Only the standard library is imported here, so the CLI can import the report types without torch or OpenCV.
"""

from __future__ import annotations

from swinfuse.video.results import VideoEvaluation, VideoInterrupted, VideoReport

__all__ = ["VideoEvaluation", "VideoInterrupted", "VideoReport"]
