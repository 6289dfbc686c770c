"""The embedded broker's SCRAM check, on RFC 7677's SCRAM-SHA-256 example (its salt, nonces, proof)."""

from __future__ import annotations

import base64

from shared.stack.broker_front import ScramExchange, User

# RFC 7677, section 3: user "user", password "pencil", 4096 iterations.
CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def exchange(password: str = "pencil") -> ScramExchange:
    scram = ScramExchange("SCRAM-SHA-256", {"user": User("user", password, "SCRAM-SHA-256")})
    assert scram.first(CLIENT_FIRST) is not None
    # The RFC's salt and server nonce in place of the random ones.
    scram.salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    scram.server_first = SERVER_FIRST
    return scram


def test_the_right_proof_is_answered_with_the_servers_signature() -> None:
    assert exchange().final(CLIENT_FINAL) == SERVER_FINAL


def test_a_wrong_password_a_replayed_nonce_or_an_unknown_user_is_refused() -> None:
    assert exchange("pen").final(CLIENT_FINAL) is None
    assert exchange().final(CLIENT_FINAL.replace("k0,p=", "k1,p=")) is None
    assert exchange().final("c=biws,r=x") is None
    users = {"user": User("user", "pencil", "SCRAM-SHA-512")}
    assert ScramExchange("SCRAM-SHA-256", users).first(CLIENT_FIRST) is None  # that user has no SHA-256 login
    assert ScramExchange("SCRAM-SHA-256", users).first("n,,n=eve,r=abc") is None
