//! Mescon media: the SFU engine (filled in by the SFU work).
