"""Shared, non-domain building blocks: keys, tokens, field encryption, problem+json errors."""
