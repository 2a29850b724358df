//! Shared helpers for the examples live in each example; this library is empty.
