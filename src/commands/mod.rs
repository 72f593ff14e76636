//! The commands, above every stage they use: `serve` (the router until a
//! signal), `check` (the config and environment, by the functions `serve`
//! uses), `deadletters` / `replay` (the journal's dead letters), `store
//! migrate` (the journal's schema) and `completions`. The offline tools (`demo`, `send`, `stripe-standin`) are
//! in [`crate::offline`]. `main` parses their arguments and calls them.

pub mod check;
pub mod completions;
pub mod deadletters;
pub mod serve;
pub mod store;
