"""Data minimization before anything leaves our infrastructure (GDPR): personal data in a text is replaced by
stable placeholders (`[PERSON_1]`, `[PHONE_1]`, ...) and restored in the answer where that is right.

What is found (docs/backend.md, "What leaves the house", has the table with examples and the known limits):
secrets (passwords, PINs, codes, URL credentials and tokens, API keys), email addresses (also obfuscated and
internationalized), IBANs and payment cards (by checksum, whatever follows them), national ID numbers, dates of
birth, phone numbers, IP addresses, number plates, street addresses, postcodes, and the household members' names in
every spelling. What stays: dates, times, quantities, prices, rooms, products and every catalog title.

One module per family: `web` (secrets, emails, IPs), `numbers` (IBAN, cards, phones), `ids`, `dates`, `places`
(addresses, postcodes, plates), `names` (+ `words`, the common-word lists); `core` runs them in order.
"""

from app.services.sanitize.core import DEFAULT_REGIONS, Sanitized, Sanitizer
from app.services.sanitize.names import MIN_NAME_LETTERS, validate_member_name

__all__ = ["DEFAULT_REGIONS", "MIN_NAME_LETTERS", "Sanitized", "Sanitizer", "validate_member_name"]
