//! The operating system, as the rest of the launcher needs it: the one `/proc` reader, process
//! groups, signals, the launcher's own heap, and the wrappers every child is spawned with.
//! Nothing here knows pgpool.

pub mod group;
pub mod memory;
pub mod proc;
pub mod signals;
pub mod spawn;
