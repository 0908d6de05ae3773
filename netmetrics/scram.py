"""SCRAM-SHA-256 verifiers as PostgreSQL stores them (pg_authid.rolpassword), made client-side.

`sudo make central` (scripts/central.sh) sets its roles' passwords as verifiers, the way psql's
\\password does: the password itself never reaches the server or its log. It keeps a role's
verifier when it already belongs to the password, so that a second run changes nothing (a new
verifier of the same password differs: its salt is random).

    printf '%s\\n%s\\n' PASSWORD CURRENT_VERIFIER | python -m netmetrics.scram

prints CURRENT_VERIFIER when it is PASSWORD's, else a new verifier of PASSWORD. ASCII passwords
only: SASLprep, which PostgreSQL applies first, leaves those unchanged.
"""

import base64
import hashlib
import hmac
import secrets
import sys

ITERATIONS = 4096  # PostgreSQL's (scram_iterations since 16)
SALT_BYTES = 16


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (RFC 5802, RFC 7677)."""
    if not password.isascii():
        raise ValueError("only ASCII passwords are supported")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    salt64, stored64, server64 = (b64(b) for b in (salt, stored_key, server_key))
    return f"SCRAM-SHA-256${iterations}:{salt64}${stored64}:{server64}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def matches(password: str, stored: str) -> bool:
    """Whether stored (a rolpassword: a SCRAM verifier, an MD5 hash, or empty) is password's."""
    try:
        method, parameters, _keys = stored.split("$")
        iterations, salt = parameters.split(":")
        if method != "SCRAM-SHA-256":
            return False
        mine = verifier(password, base64.b64decode(salt, validate=True), int(iterations))
    except ValueError:  # not a SCRAM verifier (binascii.Error is a ValueError)
        return False
    return hmac.compare_digest(mine, stored)


def main() -> int:
    lines = sys.stdin.read().splitlines()
    if not lines or not lines[0]:
        print("scram: expected the password on the first line of stdin", file=sys.stderr)
        return 2
    password, stored = lines[0], lines[1] if len(lines) > 1 else ""
    print(stored if matches(password, stored) else verifier(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
