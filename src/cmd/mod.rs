//! The binary's longer subcommands (the library's `cli` module holds their arguments).

pub mod ranks;
pub mod train;
