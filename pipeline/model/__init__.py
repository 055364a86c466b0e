"""Model: the msgspec event, its wire and spool forms, outcomes, archives and the API prefix, each defined once."""
