"""The pre-session connection check: a venue's staff test their link before the session.

From the join page the browser opens a short-lived probe peer on the server
(``probe.ProbePeer``), once directly over UDP and once through the TURN relay.
The server measures what the venue's link does (round trip and loss of pings
it sends itself, the uplink bitrate it receives), gives a plain verdict
(``verdict``), and stores the result for the control room (``results``).
The probe never touches rooms or the SFU; ``service.PrecheckService`` bounds
how many run at once and how often one identity may start one.

Only the settings are re-exported here (`server.settings` imports them); the
probe and the stored results are imported from their modules where they are used.
"""

from .config import PrecheckSettings

__all__ = ["PrecheckSettings"]
