"""The exchange's member client: identifier normalisation, blind subjects (RFC 9497 VOPRF,
ristretto255-SHA512), and the member API (records, bulk uploads, consents, inquiries) with the `cx` command.

No Django: members install it on its own (`pip install ./client`); the exchange imports the same code.
"""
