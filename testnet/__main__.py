"""Command line: up, down, domains, expect (see `python -m testnet --help`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from testnet import control
from testnet.spec import SpecError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the network (foreground unless --detach)")
    up.add_argument("spec", type=Path)
    up.add_argument("--state", type=Path, required=True, help="directory for PKI, log, state")
    up.add_argument("--smtp-port", type=int, help="one port for every SMTP address")
    up.add_argument("--dns-port", type=int, help="UDP and TCP port of the DNS server")
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument(
        "--reply-delay-ms",
        type=float,
        help="delay every DNS answer and SMTP reply (overrides [network] reply_delay_ms)",
    )
    up.add_argument(
        "--start-timeout",
        type=float,
        default=control.START_TIMEOUT,
        help="with --detach: seconds to wait for the network to listen",
    )

    down = commands.add_parser("down", help="stop the network started with --state DIR")
    down.add_argument("--state", type=Path, required=True)

    domains = commands.add_parser("domains", help="print the domain list to scan")
    domains.add_argument("spec", type=Path)

    expect = commands.add_parser("expect", help="print the declared expectations as JSON")
    expect.add_argument("spec", type=Path)

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as e:
        print(f"testnet: {e}", file=sys.stderr)
        return 2


def cmd_up(args: argparse.Namespace) -> int:
    for port in (args.smtp_port, args.dns_port):
        if port is not None and not 1024 < port < 65536:
            print("testnet: ports must be in 1025..65535 (no root needed)", file=sys.stderr)
            return 2
    if args.reply_delay_ms is not None and not 0 <= args.reply_delay_ms <= 60_000:
        print("testnet: --reply-delay-ms must be in 0..60000", file=sys.stderr)
        return 2
    spec = load(args.spec)  # validate before forking, so errors reach the caller
    if args.detach:
        try:
            state = control.up_detached(
                spec.source,
                args.state,
                args.smtp_port,
                args.dns_port,
                args.start_timeout,
                args.reply_delay_ms,
            )
        except RuntimeError as e:
            print(f"testnet: {e}", file=sys.stderr)
            return 1
        print(json.dumps(dataclasses.asdict(state), indent=2))
        return 0
    from testnet.network import serve  # imports the reactor: only in the serving process

    try:
        serve(spec, args.state.resolve(), args.smtp_port, args.dns_port, args.reply_delay_ms)
    except Exception as e:  # a bad certificate, a taken port: say what, briefly
        print(f"testnet: startup failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if not control.down(args.state):
        print(f"testnet: nothing running in {args.state}", file=sys.stderr)
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    for line in load(args.spec).domain_lines:
        print(line)
    return 0


def cmd_expect(args: argparse.Namespace) -> int:
    spec = load(args.spec)
    out = {
        "domains": spec.expected_domains(),
        "hosts": spec.expected_hosts(),
        "targets": [dataclasses.asdict(t) for t in spec.expected_targets()],
        "invalid": spec.expected_invalid,
        "duplicates": spec.expected_duplicates,
        "scanner": dict(spec.scanner),
        # IP -> TLS version -> status (`-a depth=protocols`); null if none are declared.
        "protocols": spec.expected_protocols() if spec.protocols_declared else None,
    }
    print(json.dumps(out, indent=2, default=str))
    return 0


COMMANDS = {"up": cmd_up, "down": cmd_down, "domains": cmd_domains, "expect": cmd_expect}

if __name__ == "__main__":
    sys.exit(main())
