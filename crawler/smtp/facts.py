"""What one SMTP/STARTTLS conversation yields: plain, picklable facts.

The client protocol fills an `Attempt`; the download handler collects the
attempts of one probe (retries included) into a `Probe`. Verdicts are judged
later from these facts alone, so every field is a raw observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schema.vocab import (
    PRE_EHLO_STAGES,
    Category,
    ErrorCode,
    Flag,
    ProtocolStatus,
    Stage,
    TlsVersion,
)


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and the text of each line (without code and separator)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class TlsFacts:
    """The negotiated session, as OpenSSL names it, and the chain as the server sent it."""

    version: str  # "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"
    cipher: str  # e.g. "ECDHE-RSA-AES256-GCM-SHA384", "TLS_AES_256_GCM_SHA384"
    forward_secrecy: bool
    kx_group: str | None  # e.g. "X25519"; None when OpenSSL does not say
    chain_der: tuple[bytes, ...]  # leaf first, DER, exactly as sent


@dataclass
class Attempt:
    """One TCP connection to one IP:port and everything said on it."""

    started_at: float = 0.0  # epoch seconds
    error: ErrorCode | None = None
    error_stage: Stage | None = None
    error_detail: str | None = None  # raw text: OS error, OpenSSL alert, offending reply
    banner: Reply | None = None
    ehlo: Reply | None = None
    ehlo_refused: bool = False  # EHLO got 5xx and HELO was tried
    helo: Reply | None = None
    extensions: tuple[str, ...] = ()  # EHLO keywords, upper-case, before TLS
    starttls_advertised: bool | None = None  # None: never saw an EHLO/HELO answer
    starttls_reply: Reply | None = None
    tls: TlsFacts | None = None
    plaintext_after_starttls: bytes = b""  # bytes waiting after the 220, discarded
    post_tls_ehlo: Reply | None = None
    post_tls_extensions: tuple[str, ...] = ()
    post_tls_ehlo_failed: bool = False
    quit_sent: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    # (">" sent or "<" received, line), bounded by the client
    transcript: list[tuple[str, str]] = field(default_factory=list)
    transcript_truncated: bool = False

    @property
    def outcome(self) -> Category | None:
        """The category as far as the wire tells it; None when TLS was negotiated,
        since then the certificate decides between strict and opportunistic."""
        if self.tls is not None:
            return None
        if self.error is not None and (
            self.error_stage in PRE_EHLO_STAGES or self.starttls_advertised is None
        ):
            return Category.ERROR
        if self.starttls_advertised:
            return Category.FAILURE
        return Category.NONE

    @property
    def transient(self) -> bool:
        """Worth another attempt after SMTP_RETRY_DELAY (docs/design.md)."""
        if self.error == ErrorCode.CONNECTION_TIMEOUT:
            return True
        if self.outcome is not Category.ERROR:
            return False
        if self.error in (ErrorCode.TIMEOUT, ErrorCode.CONNECTION_CLOSED):
            return True
        replies = [r for r in (self.banner, self.ehlo, self.helo) if r is not None]
        return self.error in (ErrorCode.GREETING_REJECTED, ErrorCode.EHLO_REJECTED) and any(
            400 <= r.code < 500 for r in replies
        )

    @property
    def flags(self) -> tuple[str, ...]:
        """Facts worth a flag that do not change the category, sorted."""
        present = {
            Flag.EHLO_REFUSED: self.ehlo_refused,
            Flag.PLAINTEXT_AFTER_STARTTLS: bool(self.plaintext_after_starttls),
            Flag.POST_TLS_EHLO_FAILED: self.post_tls_ehlo_failed,
        }
        return tuple(sorted(str(flag) for flag, on in present.items() if on))


@dataclass
class Probe:
    """One probe of one IP:port with one SNI: its attempts, the last one judges."""

    ip: str
    port: int
    sni: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]


def protocol_status(attempt: Attempt | None) -> ProtocolStatus:
    """What a conversation pinned to one version says of it (None: not tried, since
    this OpenSSL cannot offer the version). Only a handshake that failed without a
    timeout means the server refuses the version; anything earlier, or slower, is
    an error that says nothing of it."""
    if attempt is None:
        return ProtocolStatus.UNTESTABLE
    if attempt.tls is not None:
        return ProtocolStatus.SUPPORTED
    if attempt.error_stage == Stage.TLS and attempt.error != ErrorCode.TIMEOUT:
        return ProtocolStatus.NOT_SUPPORTED
    return ProtocolStatus.ERROR


@dataclass
class ProtocolScan:
    """The conversations with one IP:port pinned to each TLS version, oldest first;
    a version's attempt is None when it could not be offered."""

    ip: str
    port: int
    sni: str
    tries: list[tuple[TlsVersion, Attempt | None]] = field(default_factory=list)
