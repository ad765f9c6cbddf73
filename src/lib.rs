#![forbid(unsafe_code)]
pub mod detector;
pub mod error;
pub mod formation;
pub mod message;
pub mod protocol;
pub mod registry;
pub mod runtime;
pub mod types;
pub mod wire;
