"""Type stubs for the compiled fan-out (server/media/_fanout.c)."""

from typing import Any

BUFFER_SIZE: int
#: A capsule of the count of datagrams forward() sent in this process.
datagrams_sent: object
#: A capsule of what the compiled ingest's reader shares with forward() (arrival, batch).
batch: object

class SentHistory:
    def __init__(self, size: int, packets: bool = True) -> None: ...
    def __len__(self) -> int: ...
    @property
    def keeps_packets(self) -> bool: ...
    def put(self, header: bytes, payload: bytes) -> None: ...
    def get(self, sequence_number: int) -> tuple[bytes, bytes] | None: ...
    def clear(self) -> None: ...
    def sequence_numbers(self) -> list[int]: ...
    def sent_among(self, first: int, last: int) -> tuple[int, int]: ...

class Stream:
    ssrc: int
    payload_type: int
    clock_rate: int
    late_dropped: int
    packets_sent: int
    octets_sent: int
    last_ntp_time: int
    last_rtp_timestamp: int
    fast_sent: int
    ts_offset: int
    enabled: bool
    silent: bool
    @property
    def source_ssrc(self) -> int | None: ...
    @property
    def connected(self) -> bool: ...
    def __init__(
        self,
        *,
        ssrc: int,
        payload_type: int,
        clock_rate: int,
        next_seq: int,
        last_out_ts: int,
        late_window: int,
    ) -> None: ...
    def resync(self, packet: Any, now: float | None = None) -> None: ...
    def map_sequence(self, packet: Any, now: float) -> int: ...
    def set_header(
        self, header: bytes, word_offset: int, word_prefix: int, value_mask: int
    ) -> None: ...
    def set_history(self, history: SentHistory) -> None: ...
    def connect(
        self,
        protect: int,
        srtp: int,
        session: object,
        transport: object,
        fd: int,
        host: str,
        port: int,
        max_length: int,
        dtls: object = None,
        dtls_connected: object = None,
        nominated: dict[int, Any] | None = None,
        pair: object = None,
    ) -> None: ...
    def disconnect(self) -> None: ...

def forward(
    streams: tuple[Stream, ...],
    marker: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    ext_value: int,
    ntp: int,
    now: float,
) -> list[int] | None: ...
def copy_delays() -> tuple[tuple[float, ...], tuple[int, ...], float]: ...
def set_gso(enabled: bool) -> None: ...
def open_batch() -> None: ...
def send_batch() -> None: ...
def gso_stats() -> dict[str, Any]: ...
