"""Pin test: every aiortc/aioice internal the media layer relies on still exists.

If this fails after an aiortc upgrade, the message names the attribute that
moved; fix ``server/media/aiortc_internals.py`` (and only that module).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect

import aioice.ice
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtp import HeaderExtensionsMap
from media_testkit import RoomHarness

from server.media import aiortc_internals as internals


def _params(function: object) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)  # type: ignore[arg-type]


async def _transceiver() -> tuple[RTCPeerConnection, RTCRtpTransceiver]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: stay on this host
    return pc, pc.addTransceiver("video", direction="sendonly")


def test_aiortc_version_is_the_pinned_one() -> None:
    import aiortc

    assert aiortc.__version__ == "1.16.0", (
        f"aiortc {aiortc.__version__} installed; server/media/aiortc_internals.py was "
        "written against 1.16.0 - re-check every name it uses, then update this test"
    )


@pytest.mark.parametrize(("role", "attribute"), sorted(internals.SENDER_ATTRIBUTES.items()))
async def test_sender_private_attributes_exist(role: str, attribute: str) -> None:
    pc, transceiver = await _transceiver()
    try:
        assert hasattr(transceiver.sender, attribute), (
            f"aiortc changed: RTCRtpSender has no {attribute} ({role})"
        )
    finally:
        await pc.close()


async def test_sender_private_attribute_types() -> None:
    pc, transceiver = await _transceiver()
    sender = transceiver.sender
    names = internals.SENDER_ATTRIBUTES
    try:
        for role in ("rtp_started", "rtp_exited"):
            assert isinstance(getattr(sender, names[role]), asyncio.Event), names[role]
        assert isinstance(getattr(sender, names["rtp_history"]), dict), names["rtp_history"]
        assert isinstance(getattr(sender, names["header_extensions_map"]), HeaderExtensionsMap), (
            names["header_extensions_map"]
        )
        for role in ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count", "ssrc"):
            assert isinstance(getattr(sender, names[role]), int), names[role]
    finally:
        await pc.close()


@pytest.mark.parametrize(("method", "parameters"), sorted(internals.SENDER_METHODS.items()))
def test_sender_private_methods_have_expected_signatures(
    method: str, parameters: tuple[str, ...]
) -> None:
    function = getattr(RTCRtpSender, method, None)
    assert function is not None, f"aiortc changed: RTCRtpSender.{method} is gone"
    assert _params(function) == parameters, (
        f"aiortc changed: RTCRtpSender.{method}{_params(function)}, expected {parameters}"
    )


def test_sender_rtp_loop_still_is_the_hooked_method() -> None:
    # send() must still start the RTP loop via self._run_rtp(codec), and the RTCP
    # handler must still route PLI/FIR to _send_keyframe and NACKs to _retransmit.
    send_source = inspect.getsource(RTCRtpSender.send)
    assert "self._run_rtp(" in send_source, "aiortc changed: send() no longer calls _run_rtp"
    rtcp_source = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self._send_keyframe()" in rtcp_source, "aiortc changed: PLI no longer -> _send_keyframe"
    assert "self._retransmit(" in rtcp_source, "aiortc changed: NACK no longer -> _retransmit"
    rtcp_loop = inspect.getsource(RTCRtpSender._run_rtcp)
    for name in ("__packet_count", "__octet_count", "__rtp_timestamp", "__ntp_timestamp"):
        assert f"self.{name}" in rtcp_loop, f"aiortc changed: sender reports no longer use {name}"


async def test_receiver_jitter_buffer_and_methods() -> None:
    pc, transceiver = await _transceiver()
    try:
        name = internals.RECEIVER_ATTRIBUTES["jitter_buffer"]
        assert isinstance(getattr(transceiver.receiver, name, None), JitterBuffer), (
            f"aiortc changed: RTCRtpReceiver has no JitterBuffer at {name}"
        )
    finally:
        await pc.close()
    for method, parameters in internals.RECEIVER_METHODS.items():
        function = getattr(RTCRtpReceiver, method, None)
        assert function is not None, f"aiortc changed: RTCRtpReceiver.{method} is gone"
        assert _params(function) == parameters, f"aiortc changed: RTCRtpReceiver.{method}"
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__jitter_buffer.add(packet)" in source, (
        "aiortc changed: the receiver no longer feeds packets to __jitter_buffer.add()"
    )


async def test_transceiver_sender_attribute() -> None:
    pc, transceiver = await _transceiver()
    try:
        attribute = internals.TRANSCEIVER_SENDER_ATTRIBUTE
        assert getattr(transceiver, attribute, None) is transceiver.sender, (
            f"aiortc changed: RTCRtpTransceiver.sender is not stored in {attribute}"
        )
    finally:
        await pc.close()


def test_dtls_send_rtp_method() -> None:
    method, parameters = internals.DTLS_SEND_RTP_METHOD
    function = getattr(RTCDtlsTransport, method, None)
    assert function is not None, f"aiortc changed: RTCDtlsTransport.{method} is gone"
    assert _params(function) == parameters, f"aiortc changed: RTCDtlsTransport.{method}"


def test_aioice_host_address_function() -> None:
    name, parameters = internals.AIOICE_HOST_ADDRESSES_FUNCTION
    function = getattr(aioice.ice, name, None)
    assert function is not None, f"aioice changed: aioice.ice.{name} is gone"
    if function is not internals._get_host_addresses:
        assert _params(function) == parameters, f"aioice changed: {name}{_params(function)}"
    gather = internals._original_gather_candidates or aioice.ice.Connection.gather_candidates
    source = inspect.getsource(gather)
    assert f"{name}(" in source, f"aioice changed: gather_candidates no longer calls {name}"


@pytest.mark.parametrize(
    ("method", "parameters"), sorted(internals.AIOICE_CONNECTION_METHODS.items())
)
def test_aioice_connection_methods_have_expected_signatures(
    method: str, parameters: tuple[str, ...]
) -> None:
    originals = {
        "gather_candidates": internals._original_gather_candidates,
        "request_received": internals._original_request_received,
    }
    function = originals[method] or getattr(aioice.ice.Connection, method, None)
    assert function is not None, f"aioice changed: Connection.{method} is gone"
    assert _params(function) == parameters, (
        f"aioice changed: Connection.{method}{_params(function)}, expected {parameters}"
    )


async def test_install_sender_and_jitter_buffer_work_on_a_real_transceiver() -> None:
    pc, transceiver = await _transceiver()
    try:
        sender = internals.HookedRtpSender("video", transceiver.receiver.transport)
        internals.install_sender(transceiver, sender, stream_id="p1", track_id="p1-video-1")
        assert transceiver.sender is sender
        offer = await pc.createOffer()
        assert f"a=ssrc:{internals.sender_ssrc(sender)} " in offer.sdp
        assert "a=msid:p1 p1-video-1" in offer.sdp

        class Tap:
            def add(self, packet: object) -> tuple[bool, None]:
                return False, None

        tap = Tap()
        internals.install_jitter_buffer(transceiver.receiver, tap)  # type: ignore[arg-type]
        assert getattr(transceiver.receiver, internals.RECEIVER_ATTRIBUTES["jitter_buffer"]) is tap
    finally:
        await pc.close()


async def test_gather_only_on_loopback() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: stay on this host
    try:
        pc.addTransceiver("audio")
        with internals.gather_only_on(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")
        ]
        assert candidates
        assert all(" 127.0.0.1 " in line for line in candidates)
    finally:
        await pc.close()
    # Outside the context the original aioice behaviour is used again.
    assert internals._gather_addresses.get() is None


def test_srtp_protector_matches_pylibsrtp() -> None:
    # Same key, same packet: our direct srtp_protect call and pylibsrtp's protect()
    # must produce the very same bytes (and a receiver must accept them).
    import os

    from pylibsrtp import Policy, Session

    key = os.urandom(30)

    def session(direction: int) -> Session:
        policy = Policy(key=key, ssrc_type=direction)
        policy.allow_repeat_tx = True
        return Session(policy=policy)

    ours = internals.SrtpProtector(session(Policy.SSRC_ANY_OUTBOUND))
    reference = session(Policy.SSRC_ANY_OUTBOUND)
    receiver = session(Policy.SSRC_ANY_INBOUND)
    for seq in range(3):
        header = bytes([0x80, 97]) + seq.to_bytes(2, "big") + bytes(8)
        payload = os.urandom(900 + seq)
        protected = ours.protect(header, payload)
        assert protected == reference.protect(header + payload)
        assert receiver.unprotect(protected) == header + payload
    with pytest.raises(ValueError, match="too long"):
        ours.protect(bytes(12), bytes(1500))


def test_srtp_protect_has_the_signature_the_compiled_fanout_calls() -> None:
    # server/media/_fanout.c calls srtp_protect through a pointer it gets from
    # pylibsrtp's cffi module, typed as libsrtp 2's (srtp_t, void *, int *).
    from pylibsrtp._binding import ffi, lib

    signature = ffi.getctype(ffi.typeof(lib.srtp_protect))
    assert signature == "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)", (
        f"pylibsrtp changed srtp_protect: {signature}"
    )


async def test_dtls_and_ice_attributes_of_the_send_path() -> None:
    pc, transceiver = await _transceiver()
    try:
        dtls = transceiver.sender.transport
        for name in internals.DTLS_ATTRIBUTES:
            assert hasattr(dtls, name), f"aiortc changed: RTCDtlsTransport has no {name}"
        connection = getattr(dtls.transport, internals.ICE_CONNECTION_ATTRIBUTE, None)
        assert isinstance(connection, aioice.ice.Connection), "aiortc changed: ICE connection"
        assert isinstance(getattr(connection, internals.ICE_NOMINATED_ATTRIBUTE, None), dict), (
            "aioice changed: Connection._nominated"
        )
        internals.DtlsRtpOutput(dtls)  # resolves them
    finally:
        await pc.close()
    pair_source = inspect.getsource(aioice.ice.Connection.sendto)
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in pair_source, (
        "aioice changed: a nominated pair no longer sends through protocol / remote_addr"
    )


async def test_direct_ingest_names_exist() -> None:
    """What DirectIngest (and the load tools' cheap receive) reads per packet on
    receivers, DTLS transports, aiortc's router and aioice."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: stay on this host
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        for role, attribute in internals.INGEST_RECEIVER_ATTRIBUTES.items():
            assert attribute in vars(receiver), (
                f"aiortc changed: RTCRtpReceiver.{attribute} ({role})"
            )
        dtls = receiver.transport
        for role, attribute in internals.INGEST_DTLS_ATTRIBUTES.items():
            assert attribute in vars(dtls), f"aiortc changed: RTCDtlsTransport.{attribute} ({role})"
        router = vars(dtls)[internals.INGEST_DTLS_ATTRIBUTES["router"]]
        table = getattr(router, internals.ROUTER_SSRC_TABLE_ATTRIBUTE, None)
        assert isinstance(table, dict), "aiortc changed: RtpRouter.ssrc_table"
        assert f"self.{internals.ROUTER_SSRC_TABLE_ATTRIBUTE}.get(packet.ssrc)" in (
            inspect.getsource(type(router).route_rtp)
        ), "aiortc changed: RtpRouter.route_rtp no longer routes by ssrc_table"
        connection = getattr(dtls.transport, internals.ICE_CONNECTION_ATTRIBUTE)
        queue = getattr(connection, internals.AIOICE_QUEUE_ATTRIBUTE, None)
        assert isinstance(queue, asyncio.Queue), "aioice changed: Connection._queue"
    finally:
        await pc.close()
    for method, parameters in internals.INGEST_RECEIVER_METHODS.items():
        function = getattr(RTCRtpReceiver, method, None)
        assert function is not None, f"aiortc changed: RTCRtpReceiver.{method} is gone"
        assert _params(function) == parameters, f"aiortc changed: RTCRtpReceiver.{method}"
    name, parameters = internals.AIOICE_DATA_RECEIVED_METHOD
    assert _params(getattr(aioice.ice.Connection, name)) == parameters
    assert f"self.receiver.{name}(" in inspect.getsource(aioice.ice.StunProtocol.datagram_received)


@pytest.mark.parametrize(("name", "digest"), sorted(internals.INGEST_PORTED_SOURCES.items()))
def test_the_code_the_direct_ingest_repeats_is_unchanged(name: str, digest: str) -> None:
    """DirectIngest repeats these functions' steady state; a change must be ported."""
    owner, method = name.split(".")
    function = getattr(
        {
            "RTCRtpReceiver": RTCRtpReceiver,
            "RTCRtpSender": RTCRtpSender,
            "RTCDtlsTransport": RTCDtlsTransport,
            "RtpRouter": RtpRouter,
        }[owner],
        method,
    )
    source = inspect.getsource(function)
    assert hashlib.sha256(source.encode()).hexdigest() == digest, (
        f"aiortc changed {name}: compare it with DirectIngest "
        "(server/media/aiortc_internals.py), port the change, then update the digest"
    )


@pytest.mark.parametrize(("name", "digest"), sorted(internals.REPORTS_PORTED_SOURCES.items()))
def test_the_report_loops_we_replace_are_unchanged(name: str, digest: str) -> None:
    """TransportSenderReports and TransportReceiverReports send what aiortc's per-sender
    and per-receiver loops sent; a change must be compared with them
    (HookedRtpSender.sender_report, receiver_report) and ported."""
    owner, method = name.split(".")
    source = inspect.getsource(
        getattr({"RTCRtpSender": RTCRtpSender, "RTCRtpReceiver": RTCRtpReceiver}[owner], method)
    )
    assert hashlib.sha256(source.encode()).hexdigest() == digest, (
        f"aiortc changed {name}: compare it with HookedRtpSender.sender_report and "
        "receiver_report (server/media/aiortc_internals.py), port the change, then update "
        "the digest"
    )


@pytest.mark.parametrize(
    ("name", "digest"), sorted(internals.COMPILED_INGEST_PORTED_SOURCES.items())
)
def test_what_the_compiled_ingest_repeats_is_unchanged(name: str, digest: str) -> None:
    """server/media/_ingest.c repeats these (parse, route, statistics, NACK, the REMB
    estimator, aioice's datagram callback); a change must be ported to the C."""
    module_name, qualified_name = name.split(":")
    target: object = importlib.import_module(module_name)
    for part in qualified_name.split("."):
        target = getattr(target, part)
    source = inspect.getsource(target)  # type: ignore[arg-type]
    assert hashlib.sha256(source.encode()).hexdigest() == digest, (
        f"{module_name} changed {qualified_name}: compare it with server/media/_ingest.c "
        "(and _ingest_estimator.h), port the change, then update the digest"
    )


async def test_receivers_made_in_the_block_have_no_bandwidth_estimator() -> None:
    """A send-only transceiver's receiver never receives: the node makes it without the
    estimator aiortc gives every video receiver (1 000 bucket objects each); receivers
    made outside the block, or after it failed, keep theirs."""
    source = inspect.getsource(RTCRtpReceiver.__init__)
    assert f"= {internals.RECEIVER_ESTIMATOR_NAME}()" in source, (
        "aiortc changed: RTCRtpReceiver no longer makes its estimator by that name"
    )
    name = internals.INGEST_RECEIVER_ATTRIBUTES["remote_bitrate_estimator"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        with internals.receivers_without_estimator():
            inside = pc.addTransceiver("video", direction="sendonly").receiver
        outside = pc.addTransceiver("video", direction="recvonly").receiver
        with pytest.raises(RuntimeError), internals.receivers_without_estimator():
            raise RuntimeError("a failure inside the block")
        after_failure = pc.addTransceiver("video", direction="recvonly").receiver
    finally:
        await pc.close()
    assert vars(inside)[name] is None
    assert isinstance(vars(outside)[name], RemoteBitrateEstimator)
    assert isinstance(vars(after_failure)[name], RemoteBitrateEstimator)


async def test_a_nodes_subscribe_receivers_have_no_estimator_its_publish_ones_do(
    harness: RoomHarness,
) -> None:
    """Real peers through a node: the subscribe connections (send-only) carry no
    estimator; the publish connections keep one (REMB to the publishers)."""
    for name in ("alice", "bob"):
        await harness.client(name, width=64, height=48).join()
    await harness.wait_until(
        lambda: all(len(p.subscribe.senders) == 2 for p in harness.room._participants.values()),
        "each subscribed to the other's two tracks",
    )
    attribute = internals.INGEST_RECEIVER_ATTRIBUTES["remote_bitrate_estimator"]
    estimators: dict[str, list[object]] = {"publish": [], "subscribe": []}
    for participant in harness.room._participants.values():
        publish_pc, subscribe_pc = participant.publish._pc, participant.subscribe._pc
        assert publish_pc is not None and subscribe_pc is not None
        for role, pc in (("publish", publish_pc), ("subscribe", subscribe_pc)):
            estimators[role] += [
                vars(t.receiver)[attribute] for t in pc.getTransceivers() if t.kind == "video"
            ]
    assert len(estimators["subscribe"]) == 2 and not any(estimators["subscribe"])
    # aiortc's, or the compiled ingest's port of it (DirectIngest._use_compiled_estimator).
    assert len(estimators["publish"]) == 2 and all(e is not None for e in estimators["publish"])
