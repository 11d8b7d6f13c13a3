"""The two things the verifier needs of OpenSSL that pyOpenSSL has no public name for.

Everything else goes through pyOpenSSL's API; these two are kept here, alone, so that a
pyOpenSSL that grows a public name for either replaces one line:

- `NO_CHECK_TIME`: verify paths and signatures with every validity date ignored
  (`X509_V_FLAG_NO_CHECK_TIME`, openssl/x509_vfy.h, OpenSSL >= 1.1.0). pyOpenSSL's
  `X509StoreFlags` does not list it; `X509Store.set_flags` takes the raw value.
  `X509Store.set_time` is no substitute: the chain is judged apart from the dates of
  every certificate on its path, intermediates included, not at one chosen moment.
- `clear_error_queue()`: OpenSSL's per-thread error queue, which pyOpenSSL leaves filled
  after a failed `X509StoreContext.verify_certificate()`; reached through the binding
  pyOpenSSL itself uses (cryptography's).
"""

from __future__ import annotations

from cryptography.hazmat.bindings.openssl.binding import Binding

NO_CHECK_TIME = 0x200000

_LIB = Binding().lib  # the OpenSSL that pyOpenSSL uses


def clear_error_queue() -> None:
    """Empty this thread's OpenSSL error queue."""
    _LIB.ERR_clear_error()
