#![allow(dead_code)]
//! Shared by every integration test file: `mod common;`.

pub mod cluster;
pub mod launcher;
pub mod load;
