"""Field encryption: AES-256-GCM under a key ring, and a model field that encrypts one column.

Ciphertext layout (format 1):

    0x01 | len(key id) | key id (ascii) | 12-byte nonce | ciphertext + 16-byte tag

The associated data of a column value is b"<db_table>|<column>|<pk>", so a value copied into
another row or column does not decrypt. EXCHANGE_FIELD_KEYS is a ring: the first key encrypts,
every key decrypts; `manage.py rotate_keys` re-encrypts old values under the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django import forms
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models, transaction
from django.db.models import signals
from django.db.models.fields import AutoFieldMixin
from django.db.models.lookups import Exact
from django.db.models.query_utils import DeferredAttribute
from django.dispatch import receiver

from core.keys import parse_field_keys

FORMAT_V1 = 1
NONCE_SIZE = 12
TAG_SIZE = 16


class DecryptionError(Exception):
    """A value that cannot be decrypted. The message names the cause, never the plaintext."""


# --- key ring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRing:
    current_id: str
    current_header: bytes  # format byte, key-id length, key id: the prefix of every new value
    header_length: int
    current: AESGCM
    ciphers: dict[str, AESGCM]


# The parsed ring, built on first use rather than parsed per value: it is dropped when the
# setting changes (override_settings and pytest-django's `settings` send setting_changed) and
# rebuilt from the new value on next use.
_ring: KeyRing | None = None
_current: tuple[bytes, int, AESGCM] | None = None  # header, its length, cipher: the hot path's view


@receiver(setting_changed)
def _forget_key_ring(*, setting: str, **kwargs) -> None:
    global _ring, _current
    if setting == "EXCHANGE_FIELD_KEYS":
        _ring = _current = None


def key_ring() -> KeyRing:
    """The ring of EXCHANGE_FIELD_KEYS: the first key encrypts, every key decrypts."""
    global _ring, _current
    ring = _ring
    if ring is not None:
        return ring
    value = settings.EXCHANGE_FIELD_KEYS
    if not value:
        raise ImproperlyConfigured("EXCHANGE_FIELD_KEYS is not set")
    parsed = parse_field_keys(value)
    ciphers = {key_id: AESGCM(key) for key_id, key in parsed}
    current_id = parsed[0][0]
    kid = current_id.encode("ascii")
    ring = KeyRing(
        current_id=current_id,
        current_header=bytes((FORMAT_V1, len(kid))) + kid,
        header_length=2 + len(kid),
        current=ciphers[current_id],
        ciphers=ciphers,
    )
    _ring = ring
    _current = (ring.current_header, ring.header_length, ring.current)
    return ring


def _current_key() -> tuple[bytes, int, AESGCM]:
    ring = key_ring()
    return ring.current_header, ring.header_length, ring.current


def current_key_id() -> str:
    return key_ring().current_id


# --- encrypt / decrypt ------------------------------------------------------------------------


def encrypt(plaintext: str, *, aad: bytes) -> bytes:
    """Encrypt under the current key; `aad` names the value's place (see field_aad)."""
    header, _, cipher = _current or _current_key()
    try:
        data = plaintext.encode()
    except (AttributeError, UnicodeEncodeError):
        data = _encode_text(plaintext)
    nonce = os.urandom(NONCE_SIZE)  # random 96-bit nonce per value, from the OS each time
    return header + nonce + cipher.encrypt(nonce, data, aad)


def _encode_text(plaintext: str) -> bytes:
    if not isinstance(plaintext, str):
        raise TypeError(f"encrypt takes a str, not {type(plaintext).__name__}")
    # A lone surrogate (JSON allows "\ud800") still round-trips.
    return plaintext.encode("utf-8", "surrogatepass")


def _split(blob: bytes) -> tuple[str, int]:
    """(key id, offset of the nonce); raises DecryptionError on a malformed value."""
    if len(blob) < 2 or blob[0] != FORMAT_V1:
        raise DecryptionError("bad format: not an encrypted value of a known format version")
    start = 2 + blob[1]
    if blob[1] == 0 or len(blob) < start + NONCE_SIZE + TAG_SIZE:
        raise DecryptionError("bad format: the encrypted value is truncated")
    try:
        key_id = blob[2:start].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("bad format: the key id is not ascii") from None
    return key_id, start


def _as_bytes(blob: Any) -> bytes:
    if isinstance(blob, bytes):
        return blob
    if isinstance(blob, (bytearray, memoryview)):
        return bytes(blob)
    raise DecryptionError(f"bad format: expected bytes, got {type(blob).__name__}")


def key_id_of(blob: bytes) -> str:
    """The id of the key that encrypted `blob` (read from its header, nothing decrypted)."""
    return _split(_as_bytes(blob))[0]


def decrypt(blob: bytes, *, aad: bytes) -> str:
    header, start, cipher = _current or _current_key()
    # The common case first, cheaply: a value under the current key. Its length is checked
    # only on failure (AESGCM refuses a nonce under 8 bytes with ValueError, others fail the tag).
    if blob[:start] != header:
        cipher, start = _cipher_for(blob)
    try:
        plain = cipher.decrypt(blob[start : start + NONCE_SIZE], blob[start + NONCE_SIZE :], aad)
    except InvalidTag:
        if len(blob) < start + NONCE_SIZE + TAG_SIZE:
            raise DecryptionError("bad format: the encrypted value is truncated") from None
        raise DecryptionError(
            "authentication failed: the value belongs to another row or column (wrong context) or was tampered with"
        ) from None
    except ValueError:
        raise DecryptionError("bad format: the encrypted value is truncated") from None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        return plain.decode("utf-8", "surrogatepass")


def _cipher_for(blob: Any) -> tuple[AESGCM, int]:
    key_id, start = _split(_as_bytes(blob))
    cipher = key_ring().ciphers.get(key_id)
    if cipher is None:
        raise DecryptionError(f"unknown key id {key_id!r}: it is not in EXCHANGE_FIELD_KEYS")
    return cipher, start


def reencrypt(blob: bytes, *, aad: bytes) -> bytes | None:
    """`blob` under the current key, or None when it already is (nothing to do)."""
    if key_id_of(blob) == key_ring().current_id:
        return None
    return encrypt(decrypt(blob, aad=aad), aad=aad)


# --- the model field --------------------------------------------------------------------------


class Ciphertext(bytes):
    """A column value as read from the database, not yet decrypted.

    `pk` is the primary key of the row it was read from (bound after the instance is built),
    so the value still decrypts if the instance's pk is then changed to copy the row.
    """

    pk: Any = None


_MISSING = object()
_FILTER_REFUSED = "encrypted fields cannot be filtered (only isnull); use a blind index (core.tokens.blind_index)"


class _NoneOnlyExact(Exact):
    """`field=None` is allowed (Django turns it into isnull); any other value is refused."""

    def __init__(self, lhs, rhs):
        if rhs is not None:
            raise FieldError(_FILTER_REFUSED)
        super().__init__(lhs, rhs)


class _EncryptedAttribute(DeferredAttribute):
    """Holds the ciphertext read from the database and decrypts it on first access."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)  # loads a deferred value
        if isinstance(value, Ciphertext):
            value = self.field.open(instance, value)
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance, value):
        if value is not None and not isinstance(value, (str, Ciphertext)):
            raise TypeError(f"{self.field} takes a str or None, not {type(value).__name__}")
        instance.__dict__[self.field.attname] = value


def field_aad(model: type[models.Model], field: models.Field, pk: Any) -> bytes:
    """The associated data that binds a value to its table, column and row."""
    pk_text = str(model._meta.pk.to_python(pk))
    return f"{model._meta.db_table}|{field.column}|{pk_text}".encode()


class EncryptedTextField(models.Field):
    """Text stored AES-256-GCM encrypted in a binary column, bound to its table, column and row.

    The attribute is `str | None`; the value is encrypted in pre_save (save, create and
    bulk_create) and decrypted lazily on first access. The model needs a primary key that is
    known before insert (a UUIDField with default=uuid4).

    Limits, by design:
    - It cannot be filtered on (FieldError), except isnull; look values up by a blind index.
    - values()/values_list() return the ciphertext bytes (a `Ciphertext`), never plaintext.
    - QuerySet.update() and bulk_update() cannot write plaintext (there is no row to bind it
      to); they accept only ciphertext bytes, as rotate_keys writes them.
    - Serialisation (dumpdata, DRF's ModelField) is refused: back up the database instead.
    - Not editable in model forms unless `editable=True` is passed, so the admin never shows a
      decrypted value by accident.
    """

    description = "Text encrypted with AES-256-GCM"
    descriptor_class = _EncryptedAttribute

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.editable:
            kwargs["editable"] = True
        else:
            kwargs.pop("editable", None)
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        return "BinaryField"

    def contribute_to_class(self, cls, name, private_only=False):
        super().contribute_to_class(cls, name, private_only=private_only)
        if not cls._meta.abstract:
            signals.post_init.connect(self._bind_loaded_value, sender=cls)

    def _bind_loaded_value(self, instance, **kwargs):
        value = instance.__dict__.get(self.attname)
        if type(value) is Ciphertext and value.pk is None:
            value.pk = instance.pk

    def check(self, **kwargs):
        errors = super().check(**kwargs)
        pk = self.model._meta.pk
        if pk is not None and isinstance(pk, AutoFieldMixin):
            errors.append(
                checks.Error(
                    f"{self.model.__name__}.{self.name} needs a primary key known before insert, "
                    "not an auto-increment one.",
                    hint="Use id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False).",
                    obj=self,
                    id="core.E101",
                )
            )
        if self.unique or self.db_index or self.primary_key:
            errors.append(
                checks.Error(
                    f"{self.model.__name__}.{self.name}: an encrypted field cannot be unique, indexed or a key.",
                    hint="Index a blind index column instead (core.tokens.blind_index).",
                    obj=self,
                    id="core.E102",
                )
            )
        return errors

    # Encrypting and decrypting for the owning instance.

    def aad_for(self, pk: Any) -> bytes:
        return field_aad(self.model, self, pk)

    def open(self, instance: models.Model, blob: Ciphertext) -> str:
        pk = blob.pk if blob.pk is not None else instance.pk
        try:
            return decrypt(blob, aad=self.aad_for(pk))
        except DecryptionError as exc:
            raise DecryptionError(f"cannot decrypt {self.model._meta.label}.{self.name} of row {pk}: {exc}") from None

    def pre_save(self, model_instance, add):
        value = model_instance.__dict__.get(self.attname, _MISSING)
        if value is _MISSING:
            value = getattr(model_instance, self.attname)
        if value is None:
            return None
        pk = model_instance.pk
        if pk is None:
            raise ValueError(
                f"{self.model._meta.label}.{self.name} is encrypted for its row, so the primary key must be "
                "set before saving (give the pk a default such as uuid4)"
            )
        if isinstance(value, Ciphertext):
            if value.pk is None or self.aad_for(value.pk) == self.aad_for(pk):
                return bytes(value)  # unchanged since it was read: store it as it is
            value = self.open(model_instance, value)  # the row is being copied to a new pk
        return encrypt(value, aad=self.aad_for(pk))

    # The database side: bytes only.

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            return connection.Database.Binary(bytes(value))
        raise TypeError(
            f"{self} is encrypted in save() for its row; QuerySet.update() and bulk_update() "
            "cannot write plaintext to it"
        )

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return Ciphertext(value)

    def to_python(self, value):
        if value is None or isinstance(value, (str, Ciphertext)):
            return value
        return str(value)

    def value_to_string(self, obj):
        raise TypeError(f"{self} is encrypted and is not serialised; back up the database instead")

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        if lookup_name == "exact":
            return _NoneOnlyExact
        raise FieldError(_FILTER_REFUSED)

    def get_transform(self, name):
        raise FieldError(_FILTER_REFUSED)

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": forms.CharField, "widget": forms.Textarea, **kwargs})


# --- rotation ---------------------------------------------------------------------------------


class SealedBinaryField(models.BinaryField):
    """A binary column its owner writes with `encrypt(..., aad=field_aad(model, this field, pk))`
    and reads with `decrypt` (e.g. a stored JSON answer): plain bytes to Django, but known to
    `encrypted_fields`, so `rotate_keys` moves it to the current key like an EncryptedTextField."""


def encrypted_fields() -> list[tuple[type[models.Model], models.Field]]:
    """Every (model, field) with an encrypted column, over all installed models (each table once):
    EncryptedTextField and SealedBinaryField columns."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for field in model._meta.local_concrete_fields:
            if isinstance(field, (EncryptedTextField, SealedBinaryField)):
                found.append((model, field))
    return found


@dataclass
class RotationBatch:
    last_pk: Any  # pk of the last row looked at; None when there was nothing left
    examined: int = 0
    reencrypted: int = 0
    already_current: int = 0
    failed: list[Any] = dataclass_field(default_factory=list)  # pks of values that do not decrypt, left as they are


def rotate_batch(
    model: type[models.Model], field: models.Field, *, after_pk: Any = None, batch_size: int = 1000
) -> RotationBatch:
    """Re-encrypt under the current key the next `batch_size` non-null values after `after_pk`
    (in pk order), in one transaction, writing only that column of the rows that need it.

    Values already under the current key are skipped, so a run that stopped half-way resumes."""
    manager = model._base_manager
    queryset = manager.filter(**{f"{field.attname}__isnull": False}).order_by("pk")
    if after_pk is not None:
        queryset = queryset.filter(pk__gt=after_pk)
    current = key_ring().current_id
    with transaction.atomic():
        # Locked, so a concurrent save cannot be overwritten by the value read here.
        rows = list(queryset.select_for_update().values_list("pk", field.attname)[:batch_size])
        batch = RotationBatch(last_pk=rows[-1][0] if rows else None, examined=len(rows))
        for pk, blob in rows:
            blob = bytes(blob)  # a BinaryField's value may come as a memoryview
            try:
                if key_id_of(blob) == current:
                    batch.already_current += 1
                    continue
                aad = field_aad(model, field, pk)
                fresh = encrypt(decrypt(blob, aad=aad), aad=aad)
            except DecryptionError:
                batch.failed.append(pk)
                continue
            manager.filter(pk=pk).update(**{field.attname: fresh})
            batch.reencrypted += 1
    return batch


def rotate_field(model: type[models.Model], field: models.Field, *, batch_size: int = 1000) -> Iterator[RotationBatch]:
    """Rotate a whole column batch by batch, each in its own transaction; yields every batch."""
    after_pk = None
    while True:
        batch = rotate_batch(model, field, after_pk=after_pk, batch_size=batch_size)
        if batch.examined:
            yield batch
        if batch.examined < batch_size:
            return
        after_pk = batch.last_pk
