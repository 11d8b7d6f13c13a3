"""Which addresses may be probed."""

import pytest

from crawler.targets import Exclusions, TargetPolicy
from schema.vocab import SkipReason


def test_nonpublic_addresses_are_skipped_unless_allowed():
    strict = TargetPolicy()
    assert strict.skip_reason("127.0.0.1") is SkipReason.NON_PUBLIC_ADDRESS
    assert strict.skip_reason("10.1.2.3") is SkipReason.NON_PUBLIC_ADDRESS
    assert strict.skip_reason("100.64.0.1") is SkipReason.NON_PUBLIC_ADDRESS  # CGNAT
    assert strict.skip_reason("192.0.2.1") is SkipReason.NON_PUBLIC_ADDRESS  # documentation
    assert strict.skip_reason("fe80::1") is SkipReason.NON_PUBLIC_ADDRESS
    assert strict.skip_reason("8.8.8.8") is None
    assert TargetPolicy(allow_nonpublic=True).skip_reason("127.0.0.1") is None


def test_ipv6_modes():
    assert TargetPolicy(ipv6="off").skip_reason("2001:4860::1") is SkipReason.IPV6_DISABLED
    assert TargetPolicy(ipv6="on").skip_reason("2001:4860::1") is None
    assert TargetPolicy(allow_nonpublic=True, ipv6="auto").skip_reason("::1") is None
    with pytest.raises(ValueError):
        TargetPolicy(ipv6="maybe")


def test_exclusions_file(tmp_path):
    path = tmp_path / "exclude.txt"
    path.write_text(
        "# owners who asked\nexample.org\n192.0.2.0/24  # a network\n"
        "2001:db8::/32\nBücher.example\n"
    )
    ex = Exclusions.from_file(str(path))
    assert ex.excludes_domain("example.org") and ex.excludes_domain("mail.example.org")
    assert not ex.excludes_domain("example.com") and not ex.excludes_domain("notexample.org")
    assert ex.excludes_domain("xn--bcher-kva.example")  # list entries are A-labels
    policy = TargetPolicy(exclusions=ex)
    assert policy.skip_reason("8.8.8.8", "mx1.mail.example.org") is SkipReason.EXCLUDED
    assert policy.skip_reason("192.0.2.77") is SkipReason.EXCLUDED
    assert policy.skip_reason("2001:db8::25") is SkipReason.EXCLUDED
