//! helpers for black-box tests
