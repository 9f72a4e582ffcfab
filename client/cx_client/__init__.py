"""The exchange's member client: identifier normalisation and blind subjects (RFC 9497 VOPRF, ristretto255-SHA512).

No Django: members install it on its own (`pip install ./client`); the exchange imports the same code.
"""
