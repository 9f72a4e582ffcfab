"""The exchange's pages in the admin console; importing this package registers them."""

from exchange.admin import compliance, consents, disputes, members, records  # noqa: F401 - registration
