"""Chromium publishes its (fake) camera to the server; an aiortc participant receives it.

A minimal page, run inside the test: the vendored Socket.IO client, one
getUserMedia, one send-only peer connection, the `publish_offer` event. The
server gathers only on 127.0.0.1 and Chromium runs with
--allow-loopback-in-peer-connection, so the media stays on loopback.
"""

from __future__ import annotations

from playwright.async_api import Browser

from tests.helpers import ApiHandle
from tests.session_peer import SessionPeer

PUBLISH = """
async (token) => {
  const { io } = await import("/static/vendor/socket.io.esm.min.js");
  const socket = io("/room", { auth: { token }, transports: ["websocket"] });
  await new Promise((resolve, reject) => {
    socket.on("connect", resolve);
    socket.on("connect_error", reject);
  });
  const joined = await socket.emitWithAck("join", {});
  if (!joined.ok) throw new Error(joined.error.code);
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 320, height: 240 }, audio: true,
  });
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
  const answer = await socket.emitWithAck("publish_offer", { sdp: pc.localDescription.sdp });
  if (!answer.ok) throw new Error(answer.error.code + ": " + answer.error.message);
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  window.publishConnection = pc;
  return pc.localDescription.sdp;
}
"""


async def test_chromium_camera_reaches_an_aiortc_participant(
    browser: Browser, server: ApiHandle
) -> None:
    room = await server.create_room()
    receiver = SessionPeer(
        server.base_url, await server.token(room["id"], "m1", "member", "zhuzhou"), 1
    )
    await receiver.join()
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(server.base_url + "/")
        host_token = await server.token(room["id"], "host", "host", "hunan")
        offer = await page.evaluate(PUBLISH, host_token)
        assert "VP8" in offer or "H264" in offer
        await receiver.wait_for(
            lambda: (
                receiver.frames_from("host", "video") >= 30
                and receiver.frames_from("host", "audio") >= 30
            ),
            timeout=30,
        )
        state = await page.evaluate("window.publishConnection.connectionState")
        assert state == "connected"
        (video,) = receiver.tracks_from("host", "video")
        assert video.frames >= 30
    finally:
        await context.close()
        await receiver.close()
