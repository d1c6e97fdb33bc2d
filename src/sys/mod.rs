//! What the operating system gives every layer above: writes to stdout that cannot
//! panic ([`output`]), exit codes, private and durable files, process trees and the
//! orphan watchdog.

pub mod clock;
pub mod exit_code;
pub mod files;
pub mod orphan_watchdog;
pub mod output;
pub mod process_tree;
pub mod progress;
