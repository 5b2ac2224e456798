//! The binary's longer subcommands (the library's `cli` module holds their arguments).

pub mod train;
