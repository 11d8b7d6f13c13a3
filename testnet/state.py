"""`DIR/state.json`: how to reach a running testnet, written once everything listens."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


@dataclass(frozen=True)
class State:
    pid: int
    dns: str  # "127.53.0.1:PORT", the form DNS_NAMESERVERS takes
    smtp_port: int
    ca_bundle: str
    log: str  # connections.jsonl
    spec: str  # absolute path
    reply_delay_ms: float = 0.0  # before each DNS answer and SMTP reply
    dispatch: bool = False  # IPv4 SMTP served from one wildcard socket
    resolver: str = ""  # "IP:PORT" of the validating resolver (unbound), if the spec has one
    mta_sts_port: int = 0  # the HTTPS port of the MTA-STS policy servers (0: none)

    @classmethod
    def read(cls, state_dir: str | Path) -> State:
        data = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def write(self, state_dir: str | Path) -> Path:
        """Write atomically: a reader sees no file or the whole file."""
        path = Path(state_dir) / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @property
    def dns_ip(self) -> str:
        return self.dns.rsplit(":", 1)[0].strip("[]")

    @property
    def dns_port(self) -> int:
        return int(self.dns.rsplit(":", 1)[1])

    def connections(self) -> list[dict[str, Any]]:
        """Every connection logged so far (closed connections only), in close order."""
        path = Path(self.log)
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def scanner_settings(self) -> dict[str, str]:
        """The spec's [scanner] settings plus where this instance listens, as `-s` strings."""
        from testnet.spec import load  # only callers that scan need the spec

        settings = {k: _setting(v) for k, v in load(self.spec).scanner.items()}
        settings.update(
            DNS_NAMESERVERS=self.dns,
            SMTP_PORT=str(self.smtp_port),
            TLS_CA_BUNDLE=self.ca_bundle,
        )
        if self.mta_sts_port:
            settings["MTA_STS_PORT"] = str(self.mta_sts_port)
        return settings


def _setting(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
