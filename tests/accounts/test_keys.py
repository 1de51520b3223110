from accounts.keys import PREFIX_LEN, SECRET_LEN, generate_secret, hash_secret, prefix_of, secret_matches


def test_secret_shape_and_prefix():
    secret = generate_secret()
    assert secret.startswith("sk-hub-") and len(secret) == SECRET_LEN
    assert prefix_of(secret) == secret[:PREFIX_LEN]
    assert generate_secret() != secret


def test_malformed_secrets_have_no_prefix():
    good = generate_secret()
    for bad in ["", "sk-hub-", good[:-1], good + "x", "sk-abc" + good[6:], good[:-1] + "!", "Bearer " + good]:
        assert prefix_of(bad) is None, bad


def test_hash_is_sha256_and_compare_rejects_other_secrets():
    secret = generate_secret()
    digest = hash_secret(secret)
    assert len(digest) == 64 and secret not in digest
    assert secret_matches(secret, digest)
    assert not secret_matches(generate_secret(), digest)
    assert not secret_matches(secret, "")
