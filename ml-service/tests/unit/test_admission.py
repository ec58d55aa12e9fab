"""The key store (rotation from a file) and the client's address behind trusted proxies."""

from __future__ import annotations

from ml_service.admission import ClientAddress, KeyStore, token_id


def test_keys_from_the_setting_and_a_file_reloaded(tmp_path, settings_for):
    tokens = tmp_path / "tokens"
    tokens.write_text("# comment\n\n  file-one  \n")
    store = KeyStore(settings_for(tmp_path, secret="a,b", secret_file=tokens))
    assert store.enabled and store.keys == [b"a", b"b", b"file-one"]
    assert store.match(b"file-one") == 3 and store.match(b"b") == 2 and store.match(b"nope") == 0
    tokens.write_text("file-two\n")
    store.reload()
    assert store.match(b"file-one") == 0 and store.match(b"file-two") == 3
    missing = KeyStore(settings_for(tmp_path, secret=None, secret_file=tmp_path / "absent"))
    assert missing.enabled and missing.keys == []  # a configured but unreadable file lets nobody in
    assert not KeyStore(settings_for(tmp_path, secret=None)).enabled


def test_token_ids_hide_the_token():
    assert token_id(b"s3cret") == token_id(b"s3cret") != token_id(b"other")
    assert "s3cret" not in token_id(b"s3cret")


def test_forwarded_for_only_from_trusted_proxies():
    addr = ClientAddress("10.0.0.0/8, 192.168.1.5")
    assert addr.of("203.0.113.9", "1.2.3.4") == "ip:203.0.113.9"  # an untrusted peer cannot claim an address
    assert addr.of("10.1.2.3", "1.2.3.4") == "ip:1.2.3.4"
    assert addr.of("10.1.2.3", "6.6.6.6, 1.2.3.4, 192.168.1.5") == "ip:1.2.3.4"  # the last hop before our proxies
    assert addr.of("10.1.2.3", None) == "ip:10.1.2.3"
    assert ClientAddress("").of("10.1.2.3", "1.2.3.4") == "ip:10.1.2.3"
