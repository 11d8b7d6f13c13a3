"""Protocol matrices: which TLS versions each STARTTLS server accepts, declared by hand.

A matrix maps each of the five versions the scanner pins (`schema.vocab.TlsVersion`) to
what its pinned conversation must come to (`ProtocolStatus`), as seen by the scanner's
client: pyOpenSSL over the OpenSSL bundled in `cryptography`, min = max = the version,
`ALL:!aNULL:!eNULL:!PSK:!SRP:@SECLEVEL=0` at TLS <= 1.2, OpenSSL's suites at 1.3.

In a spec: a top-level `[protocols]` table of named matrices (`[protocols.NAME]`, one key
per version), optionally `default = "NAME"` for esmtp servers whose STARTTLS leads to TLS
with default options; and per server `protocols = "NAME"` or an inline table. Once a spec
declares any matrix, every server expected strict, opportunistic or failure needs one
(explicitly unless the default applies) and no other server may have one. A spec without
matrices (a generated benchmark world) declares nothing, and `Spec.expected_protocols`
refuses to answer for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from schema.vocab import Category, ProtocolStatus, TlsVersion

if TYPE_CHECKING:
    from testnet.spec import ServerSpec, Spec

Matrix = Mapping[str, str]  # TLS version -> protocol status, all five versions

# The categories whose IP:port saw STARTTLS advertised: the scanner tests those.
TESTED = (Category.STRICT, Category.OPPORTUNISTIC, Category.FAILURE)


def parse_matrix(where: str, value: Any, errors: list[str]) -> Matrix | None:
    """A matrix written as a table: every version exactly once, each a known status."""
    if not isinstance(value, Mapping):
        errors.append(f"{where}: must be a table of version = status")
        return None
    versions = [str(v) for v in TlsVersion]
    statuses = [str(s) for s in ProtocolStatus]
    ok = True
    for key, status in value.items():
        if key not in versions:
            errors.append(f"{where}: unknown version {key!r} (one of {', '.join(versions)})")
            ok = False
        elif status not in statuses:
            errors.append(f"{where} {key}: {status!r} is not one of {', '.join(statuses)}")
            ok = False
    missing = [v for v in versions if v not in value]
    if missing:
        errors.append(f"{where}: no status for {', '.join(missing)}")
        ok = False
    return MappingProxyType({v: str(value[v]) for v in versions}) if ok else None


def parse_table(value: Any, errors: list[str]) -> tuple[Mapping[str, Matrix], str | None]:
    """The top-level `[protocols]` table: named matrices and the optional default's name."""
    if not isinstance(value, Mapping):
        errors.append("[protocols]: must be a table")
        return {}, None
    default = value.get("default")
    if default is not None and not isinstance(default, str):
        errors.append("[protocols] default: must name a matrix")
        default = None
    named = {}
    for name, matrix in value.items():
        if name == "default":
            continue
        parsed = parse_matrix(f"[protocols.{name}]", matrix, errors)
        if parsed is not None:
            named[name] = parsed
    if default is not None and default not in value:
        errors.append(f"[protocols] default: no matrix named {default!r}")
    return MappingProxyType(named), default


def resolve(
    where: str,
    server: ServerSpec,
    value: Any,
    named: Mapping[str, Matrix],
    default: str | None,
    errors: list[str],
) -> Matrix | None:
    """A server's matrix: its `protocols` (a matrix's name or an inline table), else the
    spec's default if that stands for this server (`defaults_apply`, and STARTTLS is
    expected of it), else None."""
    if isinstance(value, str):
        if value not in named:
            errors.append(f"{where}: no matrix named {value!r} in [protocols]")
        return named.get(value)
    if value is not None:
        return parse_matrix(where, value, errors)
    if default is not None and tested(server) and defaults_apply(server):
        return named.get(default)
    return None


def defaults_apply(server: ServerSpec) -> bool:
    """Whether `[protocols] default` may stand for this server's matrix: an esmtp server
    whose STARTTLS leads to TLS with every TLS option left at its default."""
    esmtp = server.esmtp
    if esmtp is None or not esmtp.starttls or esmtp.on_starttls == "reject" or not esmtp.tls:
        return False
    tls = esmtp.tls
    return (tls.min_version, tls.max_version, tls.ciphers, tls.seclevel, tls.close_unless) == (
        None,
        None,
        "DEFAULT",
        None,
        None,
    )


def tested(server: ServerSpec) -> bool:
    """Whether any target of this server is expected to have seen STARTTLS advertised."""
    expectations = [server.expect, *server.expect_for.values()]
    return any(e is not None and e.category in TESTED for e in expectations)


def validate(spec: Spec, errors: list[str]) -> None:
    if not spec.protocols_declared:
        return
    for server in spec.servers.values():
        if server.protocols is not None and not tested(server):
            errors.append(
                f"server {server.name}: protocols declared, but no target of it is expected"
                " strict, opportunistic or failure (the scanner tests no version there)"
            )
        elif server.protocols is None and tested(server):
            hint = (
                " (its TLS options are not the defaults [protocols] default stands for)"
                if spec.default_protocols and server.esmtp and server.esmtp.tls
                else ""
            )
            errors.append(
                f"server {server.name}: expected to advertise STARTTLS (strict, opportunistic"
                f" or failure) but declares no protocols{hint}"
            )


def expected(spec: Spec) -> dict[str, dict[str, str]]:
    """IP -> version -> status, for every server a target reaches with a matrix."""
    from testnet.spec import SpecError

    if not spec.protocols_declared:
        raise SpecError(f"{spec.source}: declares no protocol matrices ([protocols])")
    reached = {t.ip for t in spec.expected_targets() if t.ip is not None}
    return {
        server.ip: dict(server.protocols)
        for server in spec.servers.values()
        if server.protocols is not None and server.ip in reached
    }
