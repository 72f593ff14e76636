//! The commands that are neither `serve` nor offline tools: `check` (the
//! config and environment, by the functions `serve` uses) and `deadletters`
//! / `replay` (the journal's dead letters). `main` parses their arguments
//! and calls them; they sit above every stage they read.

pub mod check;
pub mod deadletters;
