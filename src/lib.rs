//! Mescon library.
