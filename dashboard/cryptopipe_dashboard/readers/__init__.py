"""Small readers, one per source; each answers data or a `Problem` a person can read."""
