"""The live broadcast: one composed HLS programme per session, for any number of viewers.

Node side: :class:`~server.broadcast.service.BroadcastService` watches the
rooms this node owns; for each live room with ``broadcast`` on it runs one
worker process (:mod:`server.broadcast.supervisor`), feeds it the selected
tracks' RTP and the programme (:mod:`server.broadcast.feed`), and
:mod:`server.broadcast.http` serves ``/live/{room}``. Worker side:
:mod:`server.broadcast.worker` decodes, composes, mixes, encodes H.264/AAC
once and writes the HLS files. See docs/broadcast.md.
"""
