"""Key custody: a member's age recipient, and its API keys sealed to it.

A member that registered an age public key (`age1...`) receives its keys only as ASCII-armoured
age ciphertext, so the plaintext exists only where the matching identity is: not on a staff
screen, in a log, in a cookie or in an operator's terminal scrollback.
"""

from __future__ import annotations

import pyrage
from django.core.exceptions import ValidationError
from pyrage import x25519

MAX_RECIPIENT_LENGTH = 100  # an X25519 recipient is 62 characters


def recipient_clean(value: str) -> str:
    """The recipient as stored (stripped), or ValidationError if it is not an age X25519 recipient."""
    text = (value or "").strip()
    if not text.startswith("age1") or len(text) > MAX_RECIPIENT_LENGTH:
        raise ValidationError("the key recipient must be an age X25519 public key (age1...)")
    try:
        x25519.Recipient.from_str(text)
    except pyrage.RecipientError:
        raise ValidationError("the key recipient is not a valid age X25519 public key") from None
    return text


def key_seal(secret: str, recipient: str) -> str:
    """`secret` encrypted to `recipient`, ASCII-armoured (`-----BEGIN AGE ENCRYPTED FILE-----`)."""
    sealed = pyrage.encrypt(secret.encode(), [x25519.Recipient.from_str(recipient)], armored=True)
    return sealed.decode("ascii")
